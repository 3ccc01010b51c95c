//! `sts-guard serve`: the TLS listener, health, metrics, reloads and
//! graceful shutdown around the pure review.

mod admission_policies;
mod config;
pub mod decision;
pub mod managed_certs;
pub mod metrics;
pub mod policy_objects;
pub mod registration;
pub mod routes;
pub mod tls;
pub mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::lookup::{ClusterCache, LookupSource};
use crate::policy::Policy;
use crate::reload::watch_files;
use crate::tasks::{Spawner, Supervisor};
use metrics::Metrics;
use policy_objects::PolicyObjects;
use routes::App;

pub use config::{Limits, ServeConfig, TlsSource};

/// How long the open connections are served after a background task ended,
/// before `serve` returns its error (the process then exits non-zero within
/// 5 s of the task's end, as the kubelet's restart needs).
pub const FAILED_TASK_GRACE: Duration = Duration::from_secs(3);

pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let metrics = Metrics::new();
    // Owns every background task; dropped (aborting them) when serve returns.
    let mut supervisor = Supervisor::new();
    let tasks = supervisor.spawner();

    let policy_file = config.policy.config.as_deref();
    let policy = Policy::load_or_default(policy_file)?;
    metrics.policy_loaded();
    if policy_file.is_some() {
        metrics.reload_state("policy", true);
        metrics.policy_source("file");
    } else {
        metrics.policy_source("default");
    }
    let needs_client =
        config.services_from.is_none() || matches!(config.tls, TlsSource::Managed(_));
    let client = if needs_client {
        Some(
            crate::lookup::connect()
                .await
                .map_err(|e| anyhow::anyhow!(crate::kube_errors::describe(&e)))
                .context("connecting to the API server (in-cluster or KUBECONFIG)")?,
        )
    } else {
        None
    };
    let services = match &config.services_from {
        Some(paths) => {
            let services =
                crate::manifest::read_lookups(paths).context("reading --services-from")?;
            LookupSource::Static(Arc::new(services))
        }
        None => {
            let client = client
                .clone()
                .context("no API client for the Service cache")?;
            LookupSource::Cluster(ClusterCache::start_with(
                client,
                config.lookup_timeout,
                &tasks,
            ))
        }
    };
    if let (TlsSource::Managed(managed), Some(client)) = (&config.tls, &client) {
        registration::verify(
            client,
            &managed.webhook_configuration,
            config.lookup_timeout,
        )
        .await?;
    }
    let app = App::new(policy.clone(), services, metrics.clone());
    // With a cluster: the policy object (unless --config) and the
    // exemption objects, watched; the file reloader hands its policy on.
    let policy_objects = match (&client, &config.services_from) {
        (Some(client), None) => {
            let watch_policy = policy_file.is_none();
            app.policy_synced.store(false, Ordering::Release);
            let objects = PolicyObjects::new(
                app.clone(),
                metrics.clone(),
                policy,
                watch_policy,
                config.policy.platform_namespace.clone(),
            );
            objects.watch(client.clone(), watch_policy, &tasks);
            if config.admission_policies {
                tasks.spawn(
                    "sync: admission policies",
                    admission_policies::run(
                        client.clone(),
                        app.clone(),
                        config.policy.platform_namespace.clone(),
                    ),
                );
            }
            Some(objects)
        }
        _ => None,
    };

    let cert = match &config.tls {
        TlsSource::Files { cert, key } => {
            let loaded = tls::ReloadingCert::load(cert, key)?;
            metrics.reload_state("certificate", true);
            if let Some(expiry) = files_expiry(&tls::read(cert)?, cert) {
                metrics.certificate_expiry(&expiry);
            }
            loaded
        }
        TlsSource::Managed(managed) => {
            let cert = managed_certs::placeholder(&managed.settings)
                .map_err(|e| anyhow::anyhow!(e.in_words()))?;
            app.tls_trusted.store(false, Ordering::Release);
            let client = client
                .clone()
                .context("no API client for managed certificates")?;
            tasks.spawn(
                "managed certificates",
                managed_certs::run(
                    client,
                    managed.clone(),
                    cert.clone(),
                    app.tls_trusted.clone(),
                    tasks.clone(),
                    metrics.clone(),
                ),
            );
            cert
        }
    };
    let tls_config = tls::server_config(cert.clone(), config.client_ca.as_deref())?;
    let acceptor = TlsAcceptor::from(Arc::new(tls_config));

    spawn_reloaders(&config, &app, policy_objects, &cert, &metrics, &tasks);

    if let Some(addr) = config.metrics_listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding metrics listener {addr}"))?;
        tracing::info!(%addr, "metrics listening (plain HTTP)");
        let metrics = metrics.clone();
        let state = app.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                refresh_state(&state, &metrics);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        );
        tasks.spawn("metrics server", async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "webhook listening (TLS)");

    let (stop_tx, stop_rx) = watch::channel(false);
    let accepting = app.clone();
    let serving = accept_loop(
        listener,
        acceptor,
        routes::router(app),
        config.limits.clone(),
        stop_rx,
        config.shutdown_timeout,
    );
    tokio::pin!(serving);
    let delay = config.shutdown_delay;
    let drain = async {
        shutdown_signal().await;
        // Not ready at once, so endpoints stop sending new connections here;
        // keep serving for `delay` while that propagates.
        accepting.accepting.store(false, Ordering::Release);
        tracing::info!(delay = ?delay, "shutdown: not ready; draining");
        tokio::time::sleep(delay).await;
        let _ = stop_tx.send(true);
        // `serving` ends the select once it has drained.
        std::future::pending::<()>().await
    };
    let ended = tokio::select! {
        () = &mut serving => {
            tracing::info!("shutdown complete");
            return Ok(());
        }
        () = drain => unreachable!("drain never completes"),
        ended = supervisor.ended() => ended,
    };
    // A piece of the webhook died: out of service at once (/readyz fails,
    // the listener closes), the open connections get a moment, then exit
    // non-zero so the kubelet restarts the pod instead of leaving it Ready
    // with a frozen cache, policy or certificate.
    tracing::error!(
        task = ended.name,
        how = %ended.how,
        "background task ended; not ready, exiting so the pod is restarted"
    );
    accepting.accepting.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(FAILED_TASK_GRACE, &mut serving)
        .await
        .is_err()
    {
        tracing::warn!(grace = ?FAILED_TASK_GRACE, "connections still open; closing them");
    }
    anyhow::bail!("{ended}; exiting so that the pod is restarted")
}

fn spawn_reloaders(
    config: &ServeConfig,
    app: &Arc<App>,
    policy_objects: Option<Arc<PolicyObjects>>,
    cert: &Arc<tls::ReloadingCert>,
    metrics: &Arc<Metrics>,
    tasks: &Spawner,
) {
    let interval = config.reload_interval;
    if let TlsSource::Files {
        cert: cert_path,
        key: key_path,
    } = &config.tls
    {
        let cert = cert.clone();
        let swap = cert.clone();
        let m = metrics.clone();
        let paths = vec![cert_path.clone(), key_path.clone()];
        let shown_path = cert_path.clone();
        tasks.spawn(
            "reload: certificate",
            watch_files(
                "certificate",
                paths,
                interval,
                move |files| {
                    let r = cert.parse(files);
                    if r.is_err() {
                        m.reload("certificate", false);
                    }
                    r.map(|key| (key, files_expiry(&files[0], &shown_path)))
                },
                {
                    let m = metrics.clone();
                    move |(key, expiry)| {
                        swap.swap(key);
                        m.reload("certificate", true);
                        if let Some(expiry) = expiry {
                            m.certificate_expiry(&expiry);
                        }
                    }
                },
            ),
        );
    }
    if let Some(path) = config.policy.config.clone() {
        let shown = path.display().to_string();
        let app = app.clone();
        let m = metrics.clone();
        let m2 = metrics.clone();
        tasks.spawn(
            "reload: policy",
            watch_files(
                "policy",
                vec![path],
                interval,
                move |files| {
                    let text = String::from_utf8_lossy(&files[0]);
                    let r = Policy::from_yaml(&text, &shown);
                    if r.is_err() {
                        m.reload("policy", false);
                    }
                    r
                },
                move |policy| {
                    match &policy_objects {
                        Some(objects) => objects.set_base(policy),
                        None => app.policy.store(Arc::new(policy)),
                    }
                    m2.reload("policy", true);
                    m2.policy_loaded();
                },
            ),
        );
    }
}

/// The gauges that read state rather than count events, as of this scrape.
fn refresh_state(app: &App, metrics: &Metrics) {
    metrics.ready(app.is_ready());
    metrics.exemptions(
        &app.policy
            .load()
            .exemption_objects()
            .count_by_state(jiff::Timestamp::now()),
    );
    match &app.lookups {
        LookupSource::Cluster(cache) => {
            for (what, synced) in cache.synced() {
                metrics.cache_synced(what, synced);
            }
        }
        // Answered from files in memory: complete from the start.
        LookupSource::Static(_) => {
            for kind in crate::lookup::KINDS {
                metrics.cache_synced(kind.name, true);
            }
        }
    }
}

/// The expiry of a `--cert` file's chain and of its CA, looked for in the
/// chain and in a `ca.crt` beside it (where `sts-guard certs`, cert-manager
/// and a mounted `kubernetes.io/tls` Secret put it).
fn files_expiry(cert_pem: &[u8], cert_path: &std::path::Path) -> Option<crate::certs::Expiry> {
    let beside = cert_path
        .parent()
        .and_then(|dir| std::fs::read_to_string(dir.join("ca.crt")).ok());
    crate::certs::Expiry::of_pem(&String::from_utf8_lossy(cert_pem), beside.as_deref())
}

/// After the listener closes, open connections are served this much longer
/// before idle ones are closed (see [`accept_loop`]).
pub const SHUTDOWN_SETTLE: Duration = Duration::from_secs(1);

/// Accepts TLS connections until told to stop, then serves the open
/// connections for [`SHUTDOWN_SETTLE`], closes the idle ones and lets
/// in-flight requests finish, for at most `grace` in all.
pub async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    routes: routes::Routes,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let service = TowerToHyperService::new(routes.with_request_timeout(limits.request_timeout));
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection limit reached; closing");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // A connection accepted just before the listener closed has its first
    // request on the wire right after the handshake; closing it at once as
    // idle would drop that request unread. Keep serving open connections a
    // moment (every answer says `Connection: close` by now), then close the
    // idle ones and wait for the in-flight ones.
    let settle = SHUTDOWN_SETTLE.min(grace);
    tokio::time::sleep(settle).await;
    match tokio::time::timeout(grace - settle, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => {
            tracing::warn!(grace = ?grace, "grace period over; closing remaining connections")
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
