//! `sts-guard audit`: the webhook's answer for every StatefulSet already in
//! a live cluster ("would this be admitted if created today?").
//!
//! Services are listed first, page by page, into one map of projections
//! (like `check`'s manifests), then StatefulSets page by page, each
//! reviewed and dropped. Both are decoded lean (`lookup::listing`): no
//! managedFields, no annotations but `sts-guard.io/` ones, nothing the
//! rules do not read.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use kube::Api;
use kube::api::ListParams;
use serde::de::DeserializeOwned;
use thiserror::Error;

use super::report::{Command, ObjectReport, Origin, Report};
use crate::lookup::ManifestLookups;
use crate::lookup::listing::{ListedBudget, ListedService, ListedStatefulSet, Projection};
use crate::policy::{Policy, PolicyError};

/// Objects per list call, as kubectl's `--chunk-size`: big enough to be
/// quick, small enough that one page of a large cluster is not one huge
/// response.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

pub struct AuditOptions {
    /// One namespace, or every namespace when `None`.
    pub namespace: Option<String>,
    /// The policy file `serve` takes; `None` enforces every rule.
    pub policy: Option<PathBuf>,
    /// Objects per list call ([`DEFAULT_PAGE_SIZE`]).
    pub page_size: u32,
}

#[derive(Debug, Error)]
pub enum AuditError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(
        "cannot configure a cluster client (KUBECONFIG, ~/.kube/config or in-cluster): {}",
        crate::kube_errors::describe(.0)
    )]
    Config(kube::Error),
    #[error(
        "listing {what} took longer than the API server keeps a list open; run the audit again"
    )]
    Expired { what: &'static str },
    #[error("cannot list {what}: {}", crate::kube_errors::describe(.error))]
    List {
        what: &'static str,
        // Not a `source`: describe() already says what matters of its causes.
        error: kube::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs the audit on a runtime of its own (the rest of the CLI is sync).
pub fn audit_blocking(options: &AuditOptions) -> Result<Report, AuditError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AuditError::Runtime)?
        .block_on(audit(options))
}

pub async fn audit(options: &AuditOptions) -> Result<Report, AuditError> {
    let policy = Policy::load_or_default(options.policy.as_deref())?;
    let client = crate::lookup::connect().await.map_err(AuditError::Config)?;
    let progress = Progress::new();

    // Every Service of the audited namespaces, as the projection the rules
    // read (all of them, not only the headless ones: "is not headless" must
    // stay exact); then StatefulSets page by page, each reviewed and
    // dropped, so what is held is the projections and the report.
    let mut services = ManifestLookups::default();
    let service_api: Api<ListedService> = api(&client, options.namespace.as_deref());
    list_pages(
        &service_api,
        "Services",
        options.page_size,
        &progress,
        |page| {
            for svc in page {
                let (_, projection) = svc.projection();
                services.insert_projection(Arc::unwrap_or_clone(projection), String::new());
            }
        },
    )
    .await?;

    let budget_api: Api<ListedBudget> = api(&client, options.namespace.as_deref());
    list_pages(
        &budget_api,
        "PodDisruptionBudgets",
        options.page_size,
        &progress,
        |page| {
            for budget in page {
                services.insert_budget(Arc::unwrap_or_clone(budget.projection().1));
            }
        },
    )
    .await?;

    let mut objects = Vec::new();
    let sts_api: Api<ListedStatefulSet> = api(&client, options.namespace.as_deref());
    list_pages(
        &sts_api,
        "StatefulSets",
        options.page_size,
        &progress,
        |page| {
            for listed in page {
                let namespace = listed.namespace().to_string();
                objects.push(ObjectReport::reviewed(
                    &listed.into_view(),
                    namespace,
                    Origin::Cluster,
                    &policy,
                    &services,
                ));
            }
        },
    )
    .await?;
    drop(progress);

    objects.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(Report {
        command: Command::Audit,
        objects,
        errors: Vec::new(),
        duplicates: Vec::new(),
        documents: None,
    })
}

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Lists every object, `page_size` at a time, following continue tokens.
async fn list_pages<K>(
    api: &Api<K>,
    what: &'static str,
    page_size: u32,
    progress: &Progress,
    mut on_page: impl FnMut(Vec<K>),
) -> Result<(), AuditError>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut params = ListParams::default().limit(page_size.max(1));
    let mut seen = 0;
    loop {
        let list = api.list(&params).await.map_err(|source| match &source {
            // 410 Gone: the continue token expired mid-listing.
            kube::Error::Api(status) if status.code == 410 => AuditError::Expired { what },
            _ => AuditError::List {
                what,
                error: source,
            },
        })?;
        seen += list.items.len();
        progress.show(what, seen);
        let next = list.metadata.continue_.filter(|token| !token.is_empty());
        on_page(list.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// A counter on stderr for people watching a large cluster being listed;
/// silent when stderr is a file or a pipe (CI logs, scripts).
struct Progress {
    on: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            on: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, what: &str, seen: usize) {
        if self.on {
            let mut err = std::io::stderr().lock();
            // \r and "erase line": the counter overwrites itself.
            let _ = write!(err, "\r\x1b[Klisted {seen} {what}");
            let _ = err.flush();
        }
    }
}

impl Drop for Progress {
    /// Clears the counter, also when listing failed, before the report or
    /// the error is printed.
    fn drop(&mut self) {
        if self.on {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}
