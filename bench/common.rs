//! What the benchmark drivers on a control plane (`scale`, `audit-pods`)
//! share: progress notes and settings from the environment.

/// A progress line on stderr (stdout carries the results).
pub fn note(text: &str) {
    eprintln!("# {text}");
}

/// `name` from the environment, parsed, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not valid")),
        _ => Ok(default),
    }
}
