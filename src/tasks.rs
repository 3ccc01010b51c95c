//! The background tasks of `serve` (watches, reloaders, managed
//! certificates, the metrics server) and the one backoff every retry loop
//! uses.
//!
//! None of these tasks is meant to end. One that returns or panics would
//! leave the pod serving a frozen cache, policy or certificate while it
//! still reports ready, so each is spawned through a [`Spawner`] into a
//! [`Supervisor`], which reports the first to end by name; `serve` then
//! stops reporting ready and exits non-zero, and the kubelet restarts the
//! pod.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kube::runtime::watcher::DefaultBackoff;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};

/// The backoff of every retry loop: the watches (Services, budgets, the
/// managed-certificate objects) and the managed-certificate reconciliation.
/// client-go's reflector policy, as kube ships it: 0.8 s doubling to 30 s,
/// each delay plus up to as much again in jitter (so replicas do not retry
/// in step), reset after 2 min without a retry.
pub fn retry_backoff() -> DefaultBackoff {
    DefaultBackoff::default()
}

/// How a supervised task ended.
#[derive(Debug)]
pub enum End {
    /// Its future returned, which none should.
    Returned,
    Panicked(String),
    /// Aborted from outside (not done by sts-guard while serving).
    Cancelled,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Returned => f.write_str("returned"),
            End::Panicked(message) => write!(f, "panicked: {message}"),
            End::Cancelled => f.write_str("was cancelled"),
        }
    }
}

impl From<JoinError> for End {
    fn from(e: JoinError) -> Self {
        if e.is_panic() {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            End::Panicked(message)
        } else {
            End::Cancelled
        }
    }
}

/// A task that ended: its name and how.
#[derive(Debug)]
pub struct Ended {
    pub name: &'static str,
    pub how: End,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "background task {:?} {}", self.name, self.how)
    }
}

struct Named {
    name: &'static str,
    handle: JoinHandle<()>,
}

impl Future for Named {
    type Output = Ended;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        let name = self.name;
        Pin::new(&mut self.handle).poll(cx).map(|r| Ended {
            name,
            how: r.map_or_else(End::from, |()| End::Returned),
        })
    }
}

/// Owns every task spawned through its [`Spawner`]s: [`Supervisor::ended`]
/// reports the first that ends; dropping it aborts them all.
pub struct Supervisor {
    tasks: FuturesUnordered<Named>,
    rx: mpsc::UnboundedReceiver<Named>,
    tx: mpsc::UnboundedSender<Named>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Supervisor {
            tasks: FuturesUnordered::new(),
            rx,
            tx,
        }
    }

    /// A handle that spawns tasks owned by this supervisor.
    pub fn spawner(&self) -> Spawner {
        Spawner(Some(self.tx.clone()))
    }

    /// The first task to end, returned or panicked. Pending forever while
    /// every task runs (and while there are none).
    pub async fn ended(&mut self) -> Ended {
        loop {
            // Handles queued by spawners first, so none is missed.
            while let Ok(task) = self.rx.try_recv() {
                self.tasks.push(task);
            }
            tokio::select! {
                // Never None: self holds a sender.
                Some(task) = self.rx.recv() => self.tasks.push(task),
                Some(ended) = self.tasks.next() => return ended,
            }
        }
    }

    /// How many tasks it owns (those queued by spawners included).
    pub fn len(&mut self) -> usize {
        while let Ok(task) = self.rx.try_recv() {
            self.tasks.push(task);
        }
        self.tasks.len()
    }

    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(task) = self.rx.try_recv() {
            task.handle.abort();
        }
        for task in self.tasks.iter() {
            task.handle.abort();
        }
    }
}

/// Spawns named tasks for a [`Supervisor`], or unsupervised
/// ([`Spawner::detached`]: tests and tools that start a cache on its own).
#[derive(Clone, Debug)]
pub struct Spawner(Option<mpsc::UnboundedSender<Named>>);

impl Spawner {
    /// Tasks nobody watches (what `tokio::spawn` does).
    pub fn detached() -> Self {
        Spawner(None)
    }

    /// Starts `task` now, on the current runtime.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(tx) = &self.0 else {
            drop(tokio::spawn(fault::inject(name, task)));
            return;
        };
        if tx.is_closed() {
            // The supervisor is gone (serve is returning): nobody would
            // notice this task end, so it does not start.
            tracing::debug!(task = name, "not started: no supervisor");
            return;
        }
        let handle = tokio::spawn(fault::inject(name, task));
        if let Err(mpsc::error::SendError(task)) = tx.send(Named { name, handle }) {
            task.handle.abort();
        }
    }
}

/// A way for tests to make a named task end: `STS_GUARD_TEST_FAULT` =
/// `panic|return,<task name>,<trigger file>` runs that task until the file
/// exists, then panics or returns in its place. Read once; without the
/// variable nothing is wrapped.
mod fault {
    use super::*;

    pub const VAR: &str = "STS_GUARD_TEST_FAULT";

    #[derive(Debug)]
    struct Fault {
        panic: bool,
        task: String,
        trigger: std::path::PathBuf,
    }

    fn configured() -> Option<&'static Fault> {
        static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
        FAULT
            .get_or_init(|| {
                let value = std::env::var(VAR).ok()?;
                let mut parts = value.splitn(3, ',');
                let (mode, task, trigger) = (parts.next()?, parts.next()?, parts.next()?);
                let fault = Fault {
                    panic: mode == "panic",
                    task: task.to_string(),
                    trigger: trigger.into(),
                };
                tracing::warn!(?fault, "{VAR} is set: a task will be made to end");
                Some(fault)
            })
            .as_ref()
    }

    pub fn inject<F>(name: &'static str, task: F) -> Pin<Box<dyn Future<Output = ()> + Send>>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(fault) = configured().filter(|f| f.task == name) else {
            return Box::pin(task);
        };
        Box::pin(async move {
            let triggered = async {
                while !fault.trigger.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::select! {
                () = task => {}
                () = triggered => {}
            }
            if fault.panic {
                panic!("fault injected by {VAR}");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn the_first_task_to_end_is_reported_by_name_and_how() {
        let mut supervisor = Supervisor::new();
        let spawner = supervisor.spawner();
        spawner.spawn("forever", std::future::pending());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        spawner.spawn("returns", async move {
            let _ = rx.await;
        });
        assert_eq!(supervisor.len(), 2);
        // Nothing has ended yet.
        let early = tokio::time::timeout(Duration::from_millis(50), supervisor.ended()).await;
        assert!(early.is_err(), "{early:?}");
        tx.send(()).unwrap();
        let ended = supervisor.ended().await;
        assert_eq!(ended.name, "returns");
        assert!(matches!(ended.how, End::Returned), "{ended}");
        assert_eq!(ended.to_string(), "background task \"returns\" returned");
    }

    #[tokio::test]
    async fn a_panic_is_reported_with_its_message() {
        let mut supervisor = Supervisor::new();
        supervisor
            .spawner()
            .spawn("panics", async { panic!("the watch broke") });
        let ended = supervisor.ended().await;
        assert_eq!(ended.name, "panics");
        assert_eq!(
            ended.to_string(),
            "background task \"panics\" panicked: the watch broke"
        );
    }

    #[tokio::test]
    async fn dropping_the_supervisor_aborts_its_tasks() {
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let supervisor = Supervisor::new();
        let guard = SetOnDrop(dropped.clone());
        supervisor.spawner().spawn("forever", async move {
            let _guard = guard;
            std::future::pending::<()>().await
        });
        let spawner = supervisor.spawner();
        drop(supervisor);
        let aborted = tokio::time::timeout(Duration::from_secs(5), async {
            while !dropped.load(Ordering::Acquire) {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(aborted.is_ok(), "the task still runs");
        // A spawn after the supervisor is gone does not start the task:
        // its future is dropped unpolled.
        let polled = Arc::new(AtomicBool::new(false));
        let late_dropped = Arc::new(AtomicBool::new(false));
        let (flag, guard) = (polled.clone(), SetOnDrop(late_dropped.clone()));
        spawner.spawn("late", async move {
            let _guard = guard;
            flag.store(true, Ordering::Release);
        });
        assert!(
            late_dropped.load(Ordering::Acquire),
            "the late task was kept"
        );
        assert!(!polled.load(Ordering::Acquire), "the late task ran");
    }

    #[test]
    fn the_backoff_grows_from_under_two_seconds_to_30_to_60_s() {
        let delays: Vec<Duration> = retry_backoff().take(12).collect();
        let ms = Duration::from_millis;
        assert!(ms(800) <= delays[0] && delays[0] <= ms(1600), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= ms(60_000)), "{delays:?}");
        assert!(delays[11] >= ms(30_000), "{delays:?}");
    }
}
