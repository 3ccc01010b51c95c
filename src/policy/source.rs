//! Where the policy comes from, for `serve`, `check` and `audit` alike:
//! their flags.

use std::path::PathBuf;

/// `--config` and `--platform-namespace`.
#[derive(Debug, Clone, clap::Args)]
pub struct Source {
    /// Policy file: its keys, or a StatefulSetPolicy named default (serve re-reads it when it changes). It replaces the StatefulSetPolicy object: serve's and audit's in the cluster, check's in its input. Without either, every rule is enforced and the newer ones warn.
    #[arg(id = "config", long, env = "STS_GUARD_CONFIG", value_name = "CONFIG")]
    pub config: Option<PathBuf>,
    /// sts-guard's own namespace: StatefulSetExemptions there are always honoured and may exempt another namespace (spec.namespace).
    #[arg(
        long,
        env = "STS_GUARD_PLATFORM_NAMESPACE",
        default_value = "sts-guard"
    )]
    pub platform_namespace: String,
}
