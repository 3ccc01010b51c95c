//! Re-reading files that change under a running server: the policy file and
//! the TLS certificate.
//!
//! Polling, not inotify: kubelet updates ConfigMap and Secret volumes by
//! swapping a `..data` symlink, so the watched file itself is never written
//! and inotify on it sees nothing. Reading a few small files every couple of
//! seconds catches in-place rewrites and symlink swaps alike. A change is
//! applied only if it parses, so a half-written file keeps the last good
//! value (and is picked up on a later tick once complete).

use std::path::PathBuf;
use std::time::Duration;

/// Watches `paths`; when their bytes change, calls `load(contents)` and, if
/// it succeeds, `apply(value)`. Runs until the task is dropped.
pub async fn watch_files<T, E, L, A>(
    what: &'static str,
    paths: Vec<PathBuf>,
    interval: Duration,
    load: L,
    apply: A,
) where
    E: std::fmt::Display,
    L: Fn(&[Vec<u8>]) -> Result<T, E>,
    A: Fn(T),
{
    let mut last = read_all(&paths).ok();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let current = match read_all(&paths) {
            Ok(c) => c,
            Err(e) => {
                // A file briefly missing during a swap is normal; keep serving.
                tracing::debug!(what, error = %e, "cannot read watched file; keeping the last good one");
                continue;
            }
        };
        if last.as_ref() == Some(&current) {
            continue;
        }
        match load(&current) {
            Ok(value) => {
                apply(value);
                tracing::info!(what, "reloaded");
            }
            Err(e) => {
                tracing::error!(what, error = %e, "changed file is invalid; keeping the last good one");
            }
        }
        last = Some(current);
    }
}

fn read_all(paths: &[PathBuf]) -> std::io::Result<Vec<Vec<u8>>> {
    paths.iter().map(std::fs::read).collect()
}
