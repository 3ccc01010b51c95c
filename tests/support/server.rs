//! The servers the HTTP tests talk to: [`TestServer`], the library's own
//! accept loop on loopback inside the test process, and [`Serve`], the
//! `sts-guard serve` binary as a child process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use sts_guard::lookup::LookupSource;
use sts_guard::policy::Policy;
use sts_guard::webhook::metrics::Metrics;
use sts_guard::webhook::routes::{App, router};
use sts_guard::webhook::{Limits, accept_loop, tls};

use super::client::{Client, is_ready, tls_connect, tls_connector};
use super::control_plane::{free_ports, sts_guard_bin};
use super::{make_certs, services, services_yaml, wait_until};

/// The TLS server of `sts-guard serve`, in-process on a loopback port,
/// serving the Services of tests/fixtures/admission/services.yaml with a
/// certificate of its own (`ca()` trusts it).
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub app: Arc<App>,
    pub metrics: Arc<Metrics>,
    pub cert: Arc<tls::ReloadingCert>,
    stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(policy: Policy, limits: Limits) -> TestServer {
        sts_guard::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        make_certs(dir.path());
        let metrics = Metrics::new();
        let app = App::new(
            policy,
            LookupSource::Static(Arc::new(services())),
            metrics.clone(),
        );
        let cert =
            tls::ReloadingCert::load(&dir.path().join("tls.crt"), &dir.path().join("tls.key"))
                .unwrap();
        let config = tls::server_config(cert.clone(), None).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(Arc::new(config)),
            router(app.clone()),
            limits,
            stop_rx,
            Duration::from_secs(5),
        ));
        TestServer {
            addr,
            dir,
            app,
            metrics,
            cert,
            stop,
            task,
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Stops accepting and drains, as SIGTERM does after the delay.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr, &self.ca()).await.unwrap()
    }

    /// A raw TLS connection, for requests written by hand.
    pub async fn tls_stream(&self) -> TlsStream<tokio::net::TcpStream> {
        tls_connect(self.addr, &tls_connector(&self.ca()))
            .await
            .unwrap()
    }
}

/// `sts-guard serve` as a child process on loopback ports of its own, its
/// log (stderr) in a file; killed on drop.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    /// The plain-HTTP Prometheus port.
    pub metrics_addr: SocketAddr,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Serve {
    /// `serve` with `certs/tls.crt` and `certs/tls.key`, the Services of
    /// tests/fixtures/admission/services.yaml, files re-read every 100 ms,
    /// then the flags `extra` (`--config FILE`, `--shutdown-delay 1s`...).
    pub fn start(certs: &Path, extra: &[&str]) -> Serve {
        Serve::start_with(&[], certs, extra)
    }

    /// As [`Serve::start`], run through the command `prefix` (`unshare -m
    /// ...`), which gets the binary and its arguments last.
    pub fn start_with(prefix: &[&str], certs: &Path, extra: &[&str]) -> Serve {
        Serve::start_with_env(prefix, certs, extra, &[])
    }

    /// As [`Serve::start_with`], with the environment variables `env`
    /// (`STS_GUARD_TEST_FAULT`...) set for the process.
    pub fn start_with_env(
        prefix: &[&str],
        certs: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Serve {
        let ports = free_ports(2);
        let addr: SocketAddr = ([127, 0, 0, 1], ports[0]).into();
        let metrics_addr: SocketAddr = ([127, 0, 0, 1], ports[1]).into();
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("serve.log");
        let bin = sts_guard_bin();
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(&bin);
                cmd
            }
            None => Command::new(&bin),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--metrics-listen")
            .arg(metrics_addr.to_string())
            .arg("--cert")
            .arg(certs.join("tls.crt"))
            .arg("--key")
            .arg(certs.join("tls.key"))
            .arg("--services-from")
            .arg(services_yaml())
            .args(["--reload-interval", "100ms"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        // Nothing of the caller's configuration (clap reads STS_GUARD_* for
        // every flag) may reach the process under test.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STS_GUARD_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(env.iter().copied());
        Serve {
            child: cmd.spawn().unwrap(),
            addr,
            metrics_addr,
            log,
            _logdir: logdir,
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// How it exited, if it did within `limit`.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Whether /readyz answers 200 now, on a new connection through
    /// `connector`.
    pub async fn ready(&self, connector: &TlsConnector) -> bool {
        is_ready(self.addr, connector).await
    }

    /// Waits up to 20 s for /readyz to answer 200; panics with the log
    /// otherwise.
    pub async fn wait_ready(&self, connector: &TlsConnector) {
        let ready = wait_until(Duration::from_secs(20), || self.ready(connector)).await;
        assert!(ready, "serve never became ready; log:\n{}", self.log());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
