//! `serve`'s policy from API objects: a watch of `StatefulSetPolicy/default`
//! (unless `--config` names a policy file) and of every
//! `StatefulSetExemption`. Each change rebuilds the policy in effect and
//! swaps it in, so the next review uses it (within a watch event's
//! latency of `kubectl apply`).
//!
//! - No `default` policy object: the built-in default (every rule
//!   enforced, the newer ones warn), said in a log line and in
//!   `sts_guard_policy_source{source="default"} 1`.
//! - A policy object that cannot be used keeps the last good policy (log
//!   line, `sts_guard_reloads_total{what="policy",result="failure"}`).
//! - The CRDs not installed: nothing to watch is treated as no objects, so
//!   a cluster without them runs on the file or built-in policy (log line).
//! - Each object is decoded on its own: one that does not decode is
//!   skipped and logged, never stops the others.
//!
//! It also keeps the objects' `status` current for `kubectl get`: the
//! policy's counts of namespaces and exemptions, each exemption's state
//! (`Active`, `Expired`, `NotAllowed`) and why. Every replica writes the
//! same values (a merge patch of `/status`, only where they differ from
//! what the watch delivered), and a timer rewrites a state when an
//! exemption expires. Reviews never wait for it: they judge expiry at
//! their own time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, CustomResourceExt, Resource};
use serde::de::DeserializeOwned;

use super::metrics::Metrics;
use super::routes::App;
use crate::policy::Policy;
use crate::policy::objects::{
    ExemptionStatus, POLICY_NAME, PolicyStatus, StatefulSetExemption, StatefulSetPolicy,
};
use crate::tasks::Spawner;

/// The policy in effect, rebuilt from its parts on every change.
pub struct PolicyObjects {
    app: Arc<App>,
    metrics: Arc<Metrics>,
    platform_namespace: String,
    parts: Mutex<Parts>,
    /// Wakes the status writer after a change.
    changed: tokio::sync::Notify,
    /// Both watches delivered their first list (or found their kind not
    /// served); `/readyz` waits for it.
    pub synced: Arc<AtomicBool>,
}

struct Parts {
    /// The policy without exemption objects: the file's, the object's, or
    /// the built-in default.
    base: Policy,
    exemptions: BTreeMap<(String, String), StatefulSetExemption>,
    /// The policy object's status as last delivered (`None`: no object,
    /// or `--config`).
    policy_status: Option<PolicyStatus>,
    /// `metadata.generation` of the policy object in effect.
    policy_generation: Option<i64>,
    policy_synced: bool,
    exemptions_synced: bool,
}

impl PolicyObjects {
    /// `base` is the policy file's (`--config`) or, until the policy object
    /// is read, the built-in default; `watch_policy` says whether the
    /// policy object is watched (no file).
    pub fn new(
        app: Arc<App>,
        metrics: Arc<Metrics>,
        base: Policy,
        watch_policy: bool,
        platform_namespace: String,
    ) -> Arc<PolicyObjects> {
        Arc::new(PolicyObjects {
            synced: app.policy_synced.clone(),
            app,
            metrics,
            platform_namespace,
            changed: tokio::sync::Notify::new(),
            parts: Mutex::new(Parts {
                base,
                exemptions: BTreeMap::new(),
                policy_status: None,
                policy_generation: None,
                policy_synced: !watch_policy,
                exemptions_synced: false,
            }),
        })
    }

    /// A new base policy (a reloaded file, a changed policy object).
    pub fn set_base(&self, base: Policy) {
        self.update(|parts| parts.base = base);
    }

    /// Starts the watches, supervised by `tasks`.
    pub fn watch(self: &Arc<Self>, client: kube::Client, watch_policy: bool, tasks: &Spawner) {
        if watch_policy {
            let this = self.clone();
            let config = watcher::Config::default().fields(&format!("metadata.name={POLICY_NAME}"));
            tasks.spawn(
                "watch: policy",
                watch_kind::<StatefulSetPolicy>(client.clone(), config, move |change| {
                    this.policy_changed(change)
                }),
            );
        }
        let this = self.clone();
        tasks.spawn(
            "watch: exemptions",
            watch_kind::<StatefulSetExemption>(
                client.clone(),
                watcher::Config::default(),
                move |change| this.exemptions_changed(change),
            ),
        );
        let this = self.clone();
        tasks.spawn("status: policy objects", async move {
            this.write_statuses(client).await
        });
    }

    /// Keeps the objects' statuses what [`Self::statuses`] says, after
    /// every change and at every expiry. A failed write is logged and
    /// tried again within a minute.
    async fn write_statuses(&self, client: kube::Client) {
        const RETRY: std::time::Duration = std::time::Duration::from_secs(60);
        loop {
            let now = jiff::Timestamp::now();
            let (writes, next_expiry) = self.statuses(now);
            let mut failed = false;
            for write in writes {
                if let Err(e) = write.apply(&client).await {
                    tracing::warn!(object = %write.name(), error = %e, "cannot write status; trying again later");
                    failed = true;
                }
            }
            let until_expiry = next_expiry
                .and_then(|at| std::time::Duration::try_from(now.duration_until(at)).ok());
            let wait = match until_expiry {
                Some(d) if !failed => d.min(RETRY),
                _ => RETRY,
            };
            tokio::select! {
                () = self.changed.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The status writes that differ from what the watch delivered, and
    /// when the next exemption in force expires.
    fn statuses(&self, now: jiff::Timestamp) -> (Vec<StatusWrite>, Option<jiff::Timestamp>) {
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        let policy = self.app.policy.load();
        let mut writes = Vec::new();
        if let Some(current) = &parts.policy_status {
            let want = PolicyStatus {
                namespaces: u32::try_from(policy.spec.namespaces.len()).ok(),
                exemptions: u32::try_from(
                    policy.spec.exemptions.len() + policy.exemption_objects().len(),
                )
                .ok(),
            };
            if *current != want {
                writes.push(StatusWrite::Policy(want));
            }
        }
        for object in policy.exemption_objects().iter() {
            let state = object.state(now);
            let message =
                object
                    .not_honoured(now)
                    .unwrap_or_else(|| match object.spec.expires_at {
                        Some(at) => format!("honoured until {}", at.0),
                        None => "honoured".to_string(),
                    });
            let want = ExemptionStatus {
                state: Some(state.word().to_string()),
                message: Some(message),
            };
            let key = (object.namespace.clone(), object.name.clone());
            let current = parts.exemptions.get(&key).and_then(|e| e.status.clone());
            if current.as_ref() != Some(&want) {
                writes.push(StatusWrite::Exemption(key, want));
            }
        }
        (writes, policy.exemption_objects().next_expiry(now))
    }

    fn policy_changed(&self, change: Change<StatefulSetPolicy>) {
        let object = match change {
            Change::Listed(mut objects) => objects.pop(),
            Change::Applied(object) => Some(object),
            Change::Deleted(_) | Change::NotServed => None,
        };
        let status = object
            .as_ref()
            .map(|o| o.status.clone().unwrap_or_default());
        // A status write (ours) comes back as a change of the same
        // generation: nothing to rebuild or to log.
        let generation = object.as_ref().and_then(|o| o.metadata.generation);
        let mut same_spec = false;
        self.update(|parts| {
            same_spec = object.is_some() && parts.policy_generation == generation;
            parts.policy_status = status;
            parts.policy_generation = generation;
        });
        if same_spec {
            return;
        }
        let base = match object {
            Some(object) => {
                let source = format!("StatefulSetPolicy/{POLICY_NAME}");
                match Policy::from_spec(object.spec, &source) {
                    Ok(policy) => {
                        self.metrics.policy_source("object");
                        tracing::info!(policy = %source, "policy object in effect");
                        policy
                    }
                    Err(e) => {
                        self.metrics.reload("policy", false);
                        tracing::error!(error = %e, "policy object cannot be used; keeping the last good policy");
                        self.update(|parts| parts.policy_synced = true);
                        return;
                    }
                }
            }
            None => {
                self.metrics.policy_source("default");
                tracing::warn!(
                    "no StatefulSetPolicy named {POLICY_NAME}; the built-in default policy is in effect (every rule enforced, the newer ones warn)"
                );
                Policy::default()
            }
        };
        self.metrics.reload("policy", true);
        self.update(|parts| {
            parts.base = base;
            parts.policy_synced = true;
        });
    }

    fn exemptions_changed(&self, change: Change<StatefulSetExemption>) {
        self.update(|parts| {
            match change {
                Change::Listed(objects) => {
                    parts.exemptions = objects.into_iter().map(|o| (key(&o), o)).collect();
                }
                Change::Applied(object) => {
                    parts.exemptions.insert(key(&object), object);
                }
                Change::Deleted(k) => {
                    parts.exemptions.remove(&k);
                }
                Change::NotServed => parts.exemptions.clear(),
            }
            parts.exemptions_synced = true;
        });
    }

    /// Changes the parts, then publishes the policy they make.
    fn update(&self, change: impl FnOnce(&mut Parts)) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut parts);
        let policy = parts
            .base
            .clone()
            .with_exemption_objects(parts.exemptions.values().cloned(), &self.platform_namespace);
        // A status write coming back, a relist of the same objects: the
        // policy in force is unchanged, and so is when it was loaded.
        if **self.app.policy.load() != policy {
            self.app.policy.store(Arc::new(policy));
            self.metrics.policy_loaded();
        }
        self.changed.notify_one();
        if parts.policy_synced
            && parts.exemptions_synced
            && !self.synced.swap(true, Ordering::AcqRel)
        {
            tracing::info!(exemptions = parts.exemptions.len(), "policy objects synced");
        }
    }
}

/// One object's status to write.
enum StatusWrite {
    Policy(PolicyStatus),
    Exemption((String, String), ExemptionStatus),
}

impl StatusWrite {
    fn name(&self) -> String {
        match self {
            StatusWrite::Policy(_) => format!("StatefulSetPolicy/{POLICY_NAME}"),
            StatusWrite::Exemption((ns, name), _) => format!("StatefulSetExemption {ns}/{name}"),
        }
    }

    async fn apply(&self, client: &kube::Client) -> Result<(), kube::Error> {
        let params = PatchParams::default();
        match self {
            StatusWrite::Policy(status) => {
                let patch = Patch::Merge(serde_json::json!({ "status": status }));
                Api::<StatefulSetPolicy>::all(client.clone())
                    .patch_status(POLICY_NAME, &params, &patch)
                    .await?;
            }
            StatusWrite::Exemption((ns, name), status) => {
                let patch = Patch::Merge(serde_json::json!({ "status": status }));
                Api::<StatefulSetExemption>::namespaced(client.clone(), ns)
                    .patch_status(name, &params, &patch)
                    .await?;
            }
        }
        Ok(())
    }
}

/// `(namespace, name)` of an object.
fn key<K: Resource>(object: &K) -> (String, String) {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// What a watch saw, decoded.
enum Change<K> {
    /// A complete list (first sync or relist): these are all there are.
    Listed(Vec<K>),
    Applied(K),
    Deleted((String, String)),
    /// The API server does not serve the kind (its CRD is not installed).
    NotServed,
}

/// Watches `K` (decoding each object on its own) and hands each change to
/// `apply`. Never ends: the watcher retries every error with the one
/// backoff.
async fn watch_kind<K>(
    client: kube::Client,
    config: watcher::Config,
    mut apply: impl FnMut(Change<K>) + Send,
) where
    K: CustomResourceExt + Resource<DynamicType = ()> + DeserializeOwned,
{
    let resource = ApiResource::erase::<K>(&());
    let kind = resource.kind.clone();
    let api = Api::<DynamicObject>::all_with(client, &resource);
    let stream = watcher(api, config).backoff(crate::tasks::retry_backoff());
    let mut stream = std::pin::pin!(stream);
    let mut listing: Option<Vec<K>> = None;
    let mut said_not_served = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listing = Some(Vec::new()),
            Ok(watcher::Event::InitApply(object)) => {
                if let (Some(list), Some(object)) = (listing.as_mut(), decode::<K>(&kind, object)) {
                    list.push(object);
                }
            }
            Ok(watcher::Event::InitDone) => {
                said_not_served = false;
                apply(Change::Listed(listing.take().unwrap_or_default()));
            }
            Ok(watcher::Event::Apply(object)) => {
                if let Some(object) = decode::<K>(&kind, object) {
                    apply(Change::Applied(object));
                }
            }
            Ok(watcher::Event::Delete(object)) => apply(Change::Deleted(key(&object))),
            Err(watcher::Error::InitialListFailed(kube::Error::Api(status)))
                if status.code == 404 =>
            {
                if !said_not_served {
                    tracing::warn!(
                        kind,
                        "the API server does not serve sts-guard.io/v1alpha1 {kind} (its CRD is not installed); treating it as none"
                    );
                    said_not_served = true;
                    apply(Change::NotServed);
                }
            }
            Err(e) => tracing::warn!(kind, error = %e, "watch interrupted; retrying"),
        }
    }
}

/// `object` as `K`, or `None` (logged) when it does not decode.
fn decode<K: Resource + DeserializeOwned>(kind: &str, object: DynamicObject) -> Option<K> {
    let name = format!(
        "{}/{}",
        object.metadata.namespace.as_deref().unwrap_or(""),
        object.metadata.name.as_deref().unwrap_or("")
    );
    object
        .try_parse()
        .map_err(|e| {
            tracing::error!(kind, object = %name, error = %e, "object does not decode; ignoring it");
        })
        .ok()
}
