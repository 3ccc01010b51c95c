//! Answers of live lookups, kept for a short window: what the watch cache
//! cannot answer (a Service that is not headless or does not exist, or
//! anything before the first list arrived) costs at most one API request
//! per key per window, whatever the admission rate. Kubernetes' own
//! LimitRanger pairs its informer with the same kind of cache.
//!
//! An entry holds the lookup itself, shared: admissions that arrive while
//! it is on its way wait for the same request instead of sending their own.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// More entries than this are not kept (the oldest expire first): a flood
/// of lookups of distinct names costs its requests, not memory.
const MAX_ENTRIES: usize = 4096;

pub struct Recent<K, V: Clone> {
    window: Duration,
    entries: Mutex<HashMap<K, Entry<V>>>,
}

struct Entry<V: Clone> {
    started: Instant,
    answer: Shared<BoxFuture<'static, V>>,
}

/// A lookup's answer on its way, and whether this call started it (and so
/// sent a request) or shares one started within the window.
pub struct Pending<V: Clone> {
    pub answer: Shared<BoxFuture<'static, V>>,
    pub started_here: bool,
}

impl<K: Hash + Eq, V: Clone + Send + Sync + 'static> Recent<K, V> {
    pub fn new(window: Duration) -> Self {
        Recent {
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `key` started within the window, else a new one from
    /// `lookup`.
    pub fn get_or_start(
        &self,
        key: K,
        lookup: impl FnOnce() -> BoxFuture<'static, V>,
    ) -> Pending<V> {
        let now = Instant::now();
        // A poisoned lock only means a panic while an entry was replaced:
        // every entry is still a whole answer.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get(&key)
            && now.duration_since(entry.started) < self.window
        {
            return Pending {
                answer: entry.answer.clone(),
                started_here: false,
            };
        }
        let answer = lookup().shared();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| now.duration_since(e.started) < self.window);
        }
        if entries.len() < MAX_ENTRIES || entries.contains_key(&key) {
            entries.insert(
                key,
                Entry {
                    started: now,
                    answer: answer.clone(),
                },
            );
        }
        Pending {
            answer,
            started_here: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting(sent: &Arc<AtomicUsize>, value: u32) -> impl FnOnce() -> BoxFuture<'static, u32> {
        let sent = sent.clone();
        move || {
            sent.fetch_add(1, Ordering::SeqCst);
            async move { value }.boxed()
        }
    }

    #[tokio::test]
    async fn one_lookup_per_key_per_window() {
        let sent = Arc::new(AtomicUsize::new(0));
        let recent = Recent::new(Duration::from_secs(60));
        let first = recent.get_or_start("a", counting(&sent, 1));
        let again = recent.get_or_start("a", counting(&sent, 2));
        let other = recent.get_or_start("b", counting(&sent, 3));
        assert!(first.started_here && !again.started_here && other.started_here);
        assert_eq!(
            (first.answer.await, again.answer.await, other.answer.await),
            (1, 1, 3)
        );
        assert_eq!(sent.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_lookup_on_its_way_is_shared_and_an_expired_one_is_repeated() {
        let sent = Arc::new(AtomicUsize::new(0));
        let recent = Recent::new(Duration::from_millis(50));
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let first = recent.get_or_start("a", || async move { rx.await.unwrap() }.boxed());
        let waiting = recent.get_or_start("a", counting(&sent, 9));
        assert!(!waiting.started_here);
        tx.send(7).unwrap();
        assert_eq!((first.answer.await, waiting.answer.await), (7, 7));
        tokio::time::sleep(Duration::from_millis(60)).await;
        let later = recent.get_or_start("a", counting(&sent, 8));
        assert!(later.started_here);
        assert_eq!(later.answer.await, 8);
    }

    #[tokio::test]
    async fn a_full_cache_still_answers_and_keeps_its_bound() {
        let sent = Arc::new(AtomicUsize::new(0));
        let recent = Recent::new(Duration::from_secs(60));
        for key in 0..MAX_ENTRIES + 10 {
            let pending = recent.get_or_start(key, counting(&sent, key as u32));
            assert_eq!(pending.answer.await, key as u32);
        }
        assert_eq!(recent.entries.lock().unwrap().len(), MAX_ENTRIES);
    }
}
