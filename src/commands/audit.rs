//! `sts-guard audit`: the webhook's answer for every StatefulSet already in
//! a live cluster ("would this be admitted if created today?").
//!
//! Services and PodDisruptionBudgets (every looked-up kind) are listed
//! first, page by page, into maps of projections (like `check`'s
//! manifests), then StatefulSets page by page, each
//! reviewed and dropped. Both are decoded lean (`lookup::listing`): no
//! managedFields, no annotations but `sts-guard.io/` ones, nothing the
//! rules do not read.
//!
//! With `--report`, one policy report per StatefulSet is then applied
//! (server-side apply, so a rerun updates it in place) and the reports
//! sts-guard wrote for StatefulSets that are gone are deleted.

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams};
use serde::de::DeserializeOwned;
use thiserror::Error;

use super::report::{Expiring, ObjectReport, Origin, Run, RunReport};
use crate::lookup::listing::ListedStatefulSet;
use crate::lookup::{self, Lister, Member, Objects, Projection};
use crate::policy::objects::{POLICY_NAME, StatefulSetExemption, StatefulSetPolicy};
use crate::policy::{Policy, PolicyError};
use crate::reports::{self, Owner, PolicyReport, ReportFormat, ReportKind, Timestamp};

/// Objects per list call, as kubectl's `--chunk-size`: big enough to be
/// quick, small enough that one page of a large cluster is not one huge
/// response.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// Reports written at once: enough to hide the round trips, few enough
/// not to crowd the API server.
const CONCURRENT_REPORT_WRITES: usize = 8;

/// The field manager of the reports sts-guard applies.
const FIELD_MANAGER: &str = "sts-guard";

pub struct AuditOptions {
    /// One namespace, or every namespace when `None`.
    pub namespace: Option<String>,
    /// The policy file `serve` takes; `None`: the cluster's
    /// `StatefulSetPolicy` named `default`, else the built-in default.
    pub policy: Option<PathBuf>,
    /// sts-guard's own namespace: exemption objects there are always
    /// honoured and may name another namespace.
    pub platform_namespace: String,
    /// Objects per list call ([`DEFAULT_PAGE_SIZE`]).
    pub page_size: u32,
    /// Also write a policy report per StatefulSet, in this API.
    pub report: Option<ReportFormat>,
}

#[derive(Debug, Error)]
pub enum AuditError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(
        "cannot configure a cluster client (KUBECONFIG, ~/.kube/config or in-cluster): {}",
        crate::kube_errors::describe(.0)
    )]
    Config(#[source] kube::Error),
    #[error(
        "listing {what} took longer than the API server keeps a list open; run the audit again"
    )]
    Expired { what: &'static str },
    #[error("cannot list {what}: {}", crate::kube_errors::describe(.error))]
    List {
        what: &'static str,
        #[source]
        error: kube::Error,
    },
    #[error(
        "the {crd} CustomResourceDefinition ({api_version} {kind}) is not installed; install it, or audit without --report"
    )]
    ReportsNotInstalled {
        crd: String,
        api_version: String,
        kind: &'static str,
    },
    #[error(
        "cannot {verb} {kind} {namespace}/{name}: {}",
        crate::kube_errors::describe(.error.as_ref())
    )]
    Report {
        /// `write` or `delete`.
        verb: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        // Boxed: the largest variant sets the size of every Result.
        #[source]
        error: Box<kube::Error>,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// The exit code of `audit`, given [`super::finish`]'s: with `--exit-zero`,
/// "something would be denied" (1) becomes 0, so a scheduled audit (a
/// CronJob's Job) succeeds while the cluster holds non-compliant
/// StatefulSets, which its reports already name; an error (2) stays 2.
pub fn exit_code(finished: u8, exit_zero: bool) -> u8 {
    if exit_zero && finished != super::EXIT_ERROR {
        0
    } else {
        finished
    }
}

/// Runs the audit on a runtime of its own (the rest of the CLI is sync).
pub fn audit_blocking(options: &AuditOptions) -> Result<RunReport, AuditError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AuditError::Runtime)?
        .block_on(audit(options))
}

pub async fn audit(options: &AuditOptions) -> Result<RunReport, AuditError> {
    let file_policy = options.policy.as_deref().map(Policy::load).transpose()?;
    let now = jiff::Timestamp::now();
    let client = crate::lookup::connect().await.map_err(AuditError::Config)?;
    // Before the listing: a missing CRD fails fast, with nothing written.
    match options.report {
        Some(ReportFormat::OpenReports) => {
            ensure_installed::<reports::Report>(&client, options.namespace.as_deref()).await?
        }
        Some(ReportFormat::Wgpolicyk8s) => {
            ensure_installed::<PolicyReport>(&client, options.namespace.as_deref()).await?
        }
        None => {}
    }
    let progress = Progress::new();

    // Every object of the looked-up kinds in the audited namespaces (every
    // Service, not only the headless ones the watch holds: "is not
    // headless" must stay exact), as the projections the rules read; then
    // StatefulSets page by page, each reviewed and dropped, so what is
    // held is the projections and the report.
    let mut looked_up = ListedKinds {
        client: &client,
        namespace: options.namespace.as_deref(),
        page_size: options.page_size,
        progress: &progress,
        objects: Objects::default(),
    };
    lookup::list_every_kind(&mut looked_up).await?;
    let looked_up = looked_up.objects;
    let policy = cluster_policy(
        &client,
        file_policy,
        options.namespace.as_deref(),
        &options.platform_namespace,
    )
    .await?;

    let mut objects = Vec::new();
    // (namespace, name) → uid, for the reports' owner references.
    let mut uids = BTreeMap::new();
    let sts_api: Api<ListedStatefulSet> = api(&client, options.namespace.as_deref());
    list_pages(
        &sts_api,
        "StatefulSets",
        ListParams::default().limit(options.page_size),
        &progress,
        |page| {
            for listed in page {
                let namespace = listed.namespace().to_string();
                let uid = listed.uid().to_string();
                let object = ObjectReport::reviewed(
                    &listed.into_view(),
                    namespace,
                    Origin::Cluster,
                    &policy,
                    &looked_up,
                    now,
                );
                if options.report.is_some() {
                    uids.insert((object.namespace.clone(), object.name.clone()), uid);
                }
                objects.push(object);
            }
        },
    )
    .await?;

    objects.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let written = Written {
        client: &client,
        namespace: options.namespace.as_deref(),
        page_size: options.page_size,
        progress: &progress,
    };
    match options.report {
        Some(ReportFormat::OpenReports) => {
            written.write::<reports::Report>(&objects, &uids).await?
        }
        Some(ReportFormat::Wgpolicyk8s) => written.write::<PolicyReport>(&objects, &uids).await?,
        None => {}
    }
    drop(progress);
    Ok(RunReport {
        command: Run::Audit,
        objects,
        errors: Vec::new(),
        duplicates: Vec::new(),
        documents: None,
        expiring: Expiring::of(&policy, now),
    })
}

/// The policy the webhook would apply: `file` or the cluster's
/// `StatefulSetPolicy/default` (else the built-in default), with the
/// cluster's exemption objects. A cluster without sts-guard's CRDs has
/// neither (404), which is no error.
pub(super) async fn cluster_policy(
    client: &kube::Client,
    file: Option<Policy>,
    namespace: Option<&str>,
    platform_namespace: &str,
) -> Result<Policy, AuditError> {
    let list_error = |what: &'static str| move |error| AuditError::List { what, error };
    let base = match file {
        Some(policy) => policy,
        None => {
            let api = Api::<StatefulSetPolicy>::all(client.clone());
            // 404: no such object, or no such resource (the CRD is not
            // installed; the API server then answers in plain text).
            match api.get(POLICY_NAME).await {
                Ok(object) => Policy::from_spec(object.spec, "StatefulSetPolicy/default")?,
                Err(kube::Error::Api(status)) if status.code == 404 => Policy::default(),
                Err(e) => return Err(list_error("the StatefulSetPolicy")(e)),
            }
        }
    };
    let all = Api::<StatefulSetExemption>::all(client.clone());
    let exemptions = match all.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        // Allowed to read one namespace only: its own exemptions and the
        // platform team's are the ones that can apply there.
        Err(kube::Error::Api(status)) if status.code == 403 && namespace.is_some() => {
            let mut items = Vec::new();
            for ns in [namespace.unwrap_or_default(), platform_namespace] {
                let api = Api::<StatefulSetExemption>::namespaced(client.clone(), ns);
                match api.list(&ListParams::default()).await {
                    Ok(list) => items.extend(list.items),
                    Err(kube::Error::Api(s)) if s.code == 403 || s.code == 404 => {}
                    Err(e) => return Err(list_error("StatefulSetExemptions")(e)),
                }
            }
            items
        }
        Err(e) => return Err(list_error("StatefulSetExemptions")(e)),
    };
    Ok(base.with_exemption_objects(exemptions, platform_namespace))
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

/// Lists each looked-up kind into `objects`.
struct ListedKinds<'a> {
    client: &'a kube::Client,
    namespace: Option<&'a str>,
    page_size: u32,
    progress: &'a Progress,
    objects: Objects,
}

impl Lister for ListedKinds<'_> {
    type Error = AuditError;

    async fn list<K: Member>(&mut self) -> Result<(), AuditError> {
        let listed: Api<K::Listed> = api(self.client, self.namespace);
        let objects = &mut self.objects;
        list_pages(
            &listed,
            K::INFO.plural,
            ListParams::default().limit(self.page_size),
            self.progress,
            |page| {
                for object in page {
                    objects.insert(K::object(object.projection().1), String::new());
                }
            },
        )
        .await
    }
}

/// Fails with [`AuditError::ReportsNotInstalled`] when the API server does
/// not serve `K` (a list of a type it serves answers 200, even when empty
/// or in a namespace that does not exist).
async fn ensure_installed<K: ReportKind>(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<(), AuditError> {
    let reports: Api<K> = api(client, namespace);
    match reports.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            Err(AuditError::ReportsNotInstalled {
                crd: K::API.crd_name(),
                api_version: K::API.api_version(),
                kind: K::API.kind,
            })
        }
        Err(error) => Err(AuditError::List {
            what: K::API.plural,
            error,
        }),
    }
}

/// Where and how `audit --report` writes.
struct Written<'a> {
    client: &'a kube::Client,
    /// The audited namespace; `None`: every namespace.
    namespace: Option<&'a str>,
    page_size: u32,
    progress: &'a Progress,
}

impl Written<'_> {
    /// Applies one report per StatefulSet of `objects`, then deletes the
    /// reports sts-guard wrote (by [`reports::MANAGED_BY`]) in the audited
    /// namespaces that are not among them.
    async fn write<K: ReportKind>(
        &self,
        objects: &[ObjectReport],
        uids: &BTreeMap<(String, String), String>,
    ) -> Result<(), AuditError> {
        let at = Timestamp::now();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let params = &params;
        let kept: HashSet<(String, String)> = futures::stream::iter(objects)
            .filter_map(|object| async move {
                let uid = uids.get(&(object.namespace.clone(), object.name.clone()))?;
                Some((object, uid))
            })
            .map(|(object, uid)| async move {
                let owner = Owner {
                    namespace: &object.namespace,
                    name: &object.name,
                    uid,
                };
                let report: K = reports::build(object.outcomes(), &owner, at);
                let name = reports::report_name(&object.name);
                let reports: Api<K> = Api::namespaced(self.client.clone(), &object.namespace);
                match reports.patch(&name, params, &Patch::Apply(&report)).await {
                    Ok(_) => Ok((object.namespace.clone(), name)),
                    Err(error) => Err(AuditError::Report {
                        verb: "write",
                        kind: K::API.kind,
                        namespace: object.namespace.clone(),
                        name,
                        error: Box::new(error),
                    }),
                }
            })
            .buffer_unordered(CONCURRENT_REPORT_WRITES)
            .try_collect()
            .await?;

        let mut stale = Vec::new();
        let ours: Api<PartialObjectMeta<K>> = api(self.client, self.namespace);
        let selector = format!("{}={}", reports::MANAGED_BY.0, reports::MANAGED_BY.1);
        list_pages(
            &ours,
            K::API.plural,
            ListParams::default()
                .labels(&selector)
                .limit(self.page_size),
            self.progress,
            |page| {
                for report in page {
                    let key = (
                        report.metadata.namespace.unwrap_or_default(),
                        report.metadata.name.unwrap_or_default(),
                    );
                    if !kept.contains(&key) {
                        stale.push(key);
                    }
                }
            },
        )
        .await?;
        for (namespace, name) in stale {
            let reports: Api<K> = Api::namespaced(self.client.clone(), &namespace);
            match reports.delete(&name, &DeleteParams::default()).await {
                // 404: the garbage collector came first (its owner is gone).
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => {
                    return Err(AuditError::Report {
                        verb: "delete",
                        kind: K::API.kind,
                        namespace,
                        name,
                        error: Box::new(error),
                    });
                }
                Ok(_) => {}
            }
        }
        tracing::info!(
            kind = K::API.kind,
            written = kept.len(),
            "policy reports written"
        );
        Ok(())
    }
}

/// Lists every object, a page at a time, following continue tokens.
async fn list_pages<K>(
    api: &Api<K>,
    what: &'static str,
    first: ListParams,
    progress: &Progress,
    mut on_page: impl FnMut(Vec<K>),
) -> Result<(), AuditError>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let limit = first.limit.unwrap_or(DEFAULT_PAGE_SIZE).max(1);
    let mut params = first.limit(limit);
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

#[cfg(test)]
mod tests {
    use super::exit_code;
    use crate::commands::EXIT_ERROR;

    #[test]
    fn exit_zero_turns_would_be_denied_into_success_but_keeps_errors() {
        // Without the flag: finish()'s code as it is.
        assert_eq!([0, 1, EXIT_ERROR].map(|c| exit_code(c, false)), [0, 1, 2]);
        // With it: only an error still fails.
        assert_eq!([0, 1, EXIT_ERROR].map(|c| exit_code(c, true)), [0, 0, 2]);
    }
}
