//! Command line only: parse flags, call into the library.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use sts_guard::commands as cli;
use sts_guard::commands::report::Format;
use sts_guard::log_writer;
use sts_guard::reports::ReportFormat;
use sts_guard::webhook::{self, ServeConfig};

#[derive(Parser)]
#[command(
    name = "sts-guard",
    version,
    about = "Keeps StatefulSets healthy by construction"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "STS_GUARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
// Parsed once at startup: boxing ServeArgs to shrink it would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Serve AdmissionReview v1 over TLS: POST /validate, POST /mutate, GET /healthz, GET /readyz.
    Serve(ServeArgs),
    /// Write a CA and a serving certificate: ca.crt, ca.key, tls.crt, tls.key (--ca DIR: only a new serving certificate).
    Certs(CertsArgs),
    /// Review manifests offline, as the webhooks would on create. Exit 0: nothing would be denied; 1: something would; 2: unreadable input or bad usage.
    Check(CheckArgs),
    /// Review the StatefulSets of a live cluster, as the webhooks would on create. Exit codes as for check.
    Audit(AuditArgs),
    /// The policy as API objects: `policy convert -f FILE` prints the StatefulSetPolicy (and StatefulSetExemptions) a policy file means; `policy vap` the ValidatingAdmissionPolicies that judge its rules in the API server itself.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Policy report types: `reports crd openreports|wgpolicyk8s` prints the CRD sts-guard's types describe (for test clusters; install the upstream CRDs in production).
    #[command(hide = true)]
    Reports {
        #[command(subcommand)]
        command: ReportsCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Print the StatefulSetPolicy named default, and a StatefulSetExemption for each exemption the policy lets its namespace own, that say what the policy file says.
    Convert {
        /// The policy file (serve's --config).
        #[arg(
            short = 'f',
            long = "filename",
            env = "STS_GUARD_FILENAME",
            value_name = "FILE"
        )]
        file: PathBuf,
    },
    /// Print the CustomResourceDefinitions of StatefulSetPolicy and StatefulSetExemption as YAML (deploy/ and the chart ship them).
    Crds,
    /// Print the policy as ValidatingAdmissionPolicies (one per rule that reads only the StatefulSet, named sts-guard-RULE) and their bindings (one per mode), as YAML: the API server then judges those rules without the webhook. Exemptions are those in force now: generate again when one expires. Reads the policy file (--config), else the cluster's StatefulSetPolicy named default (or the built-in default) and StatefulSetExemption objects, as audit does. Never matched, as for the webhook: kube-system, kube-public, kube-node-lease, the platform namespace and namespaces labelled sts-guard.io/ignore.
    Vap {
        #[command(flatten)]
        policy: sts_guard::policy::Source,
    },
}

#[derive(Subcommand)]
enum ReportsCommand {
    /// Print the CustomResourceDefinition of a report API as YAML.
    Crd {
        #[arg(value_enum)]
        api: ReportFormat,
    },
}

#[derive(Args)]
struct CheckArgs {
    /// Manifest file, folder (searched recursively for .yaml, .yml, .json) or - for stdin (repeatable).
    #[arg(
        short = 'f',
        long = "filename",
        env = "STS_GUARD_FILENAME",
        value_name = "PATH",
        required = true
    )]
    paths: Vec<PathBuf>,
    /// Namespace of objects that name none.
    #[arg(
        short = 'n',
        long,
        env = "STS_GUARD_NAMESPACE",
        default_value = "default"
    )]
    namespace: String,
    #[command(flatten)]
    policy: sts_guard::policy::Source,
    /// Output format.
    #[arg(short = 'o', long, env = "STS_GUARD_OUTPUT", value_enum, default_value_t = Format::Text)]
    output: Format,
}

#[derive(Args)]
struct AuditArgs {
    /// Only this namespace (default: all namespaces).
    #[arg(short = 'n', long, env = "STS_GUARD_NAMESPACE")]
    namespace: Option<String>,
    /// Objects per list call, as kubectl's --chunk-size.
    #[arg(long, env = "STS_GUARD_CHUNK_SIZE", default_value_t = cli::audit::DEFAULT_PAGE_SIZE, value_parser = clap::value_parser!(u32).range(1..))]
    chunk_size: u32,
    #[command(flatten)]
    policy: sts_guard::policy::Source,
    /// Output format.
    #[arg(short = 'o', long, env = "STS_GUARD_OUTPUT", value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Also write one policy report per StatefulSet (and delete those of StatefulSets that are gone), in this API; its CRD must be installed.
    #[arg(long, env = "STS_GUARD_REPORT", value_enum, value_name = "API")]
    report: Option<ReportFormat>,
    /// Exit 0 even when something would be denied (the report, and --report's reports, say what); errors still exit 2. For scheduled audits.
    #[arg(long, env = "STS_GUARD_EXIT_ZERO")]
    exit_zero: bool,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ServeConfig,
    /// Threads that serve requests [default: the CPUs the pod may use, at most 4]. With 1 (what a CPU limit of 1 or less gives), one thread does everything.
    #[arg(long, env = "STS_GUARD_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    worker_threads: Option<u16>,
}

#[derive(Args)]
struct CertsArgs {
    /// Folder to write ca.crt, ca.key, tls.crt and tls.key into.
    #[arg(long, env = "STS_GUARD_CERTS_OUT", value_name = "DIR")]
    out: PathBuf,
    /// DNS name of the serving certificate (repeatable; at least one --dns or --ip).
    #[arg(
        long,
        env = "STS_GUARD_CERTS_DNS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    dns: Vec<String>,
    /// IP address of the serving certificate (repeatable).
    #[arg(
        long,
        env = "STS_GUARD_CERTS_IP",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    ip: Vec<IpAddr>,
    /// Keep the CA: issue only a new serving certificate from DIR/ca.crt and DIR/ca.key.
    #[arg(long, env = "STS_GUARD_CERTS_CA", value_name = "DIR")]
    ca: Option<PathBuf>,
    /// Replace a CA already in --out with a new one (certificates it signed stop being trusted once its ca.crt leaves the caBundle). Without it, certs refuses to overwrite ca.crt or ca.key.
    #[arg(long, env = "STS_GUARD_CERTS_FORCE", conflicts_with = "ca")]
    force: bool,
}

fn main() -> ExitCode {
    // Not `Cli::parse()`: it would add the root command's usage to the
    // sentences some of serve's flags are refused with once read (raw
    // errors, see `webhook::TlsSource`); as they are, they read
    // `error: SENTENCE`.
    let cli = Cli::from_arg_matches(&Cli::command().get_matches()).unwrap_or_else(|e| e.exit());
    // check and audit answer on stdout and stderr themselves; logs (kube's
    // connection errors, say) would repeat that answer, so they are off
    // unless RUST_LOG asks for them.
    let default_level = match cli.command {
        Command::Check(_)
        | Command::Audit(_)
        | Command::Reports { .. }
        | Command::Policy { .. } => "off",
        _ => "info",
    };
    // serve's lines are written in batches (log_writer); what is still
    // buffered is written when `flush` drops.
    let flush = match init_tracing(
        cli.log_format,
        default_level,
        matches!(cli.command, Command::Serve(_)),
    ) {
        Ok(flush) => flush,
        Err(e) => {
            eprintln!("error: starting the log writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => run_serve(args, flush),
        Command::Certs(args) => {
            match sts_guard::commands::certs::run_with(
                &args.out,
                &args.dns,
                &args.ip,
                args.ca.as_deref(),
                args.force,
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Check(args) => {
            let options = cli::check::CheckOptions {
                paths: args.paths,
                namespace: args.namespace,
                policy: args.policy.config,
                platform_namespace: args.policy.platform_namespace,
            };
            ExitCode::from(cli::finish(cli::check::check(&options), args.output))
        }
        Command::Audit(args) => {
            let options = cli::audit::AuditOptions {
                namespace: args.namespace,
                policy: args.policy.config,
                platform_namespace: args.policy.platform_namespace,
                page_size: args.chunk_size,
                report: args.report,
            };
            let code = cli::finish(cli::audit::audit_blocking(&options), args.output);
            ExitCode::from(cli::audit::exit_code(code, args.exit_zero))
        }
        Command::Reports {
            command: ReportsCommand::Crd { api },
        } => print_crd(api),
        Command::Policy { command } => {
            let printed = match command {
                PolicyCommand::Convert { file } => cli::policy::convert(&file),
                PolicyCommand::Crds => cli::policy::crds_yaml(),
                PolicyCommand::Vap { policy } => cli::policy::vap(
                    policy.config.as_deref(),
                    &policy.platform_namespace,
                    jiff::Timestamp::now(),
                ),
            };
            match printed {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn print_crd(api: ReportFormat) -> ExitCode {
    use sts_guard::reports::{PolicyReport, Report, crd};
    let crd = match api {
        ReportFormat::OpenReports => crd::<Report>(),
        ReportFormat::Wgpolicyk8s => crd::<PolicyReport>(),
    };
    match serde_saphyr::to_string(&crd) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write the CRD as YAML: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_serve(args: ServeArgs, flush: Option<log_writer::Flush>) -> ExitCode {
    let runtime = match runtime(args.worker_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(webhook::serve(args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "serve failed");
            // The log first, so the plain sentence is the last line.
            drop(flush);
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime `serve` runs on. Admission traffic comes a request at a
/// time over a few keep-alive connections: with one thread nothing ever
/// wakes a second one to look for work, which cost ~40 us of CPU per
/// request beside a 2-thread scheduler (BENCHMARKS.md), so one CPU gets a
/// current-thread runtime. More CPUs get that many workers, up to 4: a
/// webhook on a 64-core node has no use for 64 threads.
fn runtime(worker_threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = worker_threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        usize::from,
    );
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

fn init_tracing(
    format: LogFormat,
    default_level: &str,
    batched: bool,
) -> std::io::Result<Option<log_writer::Flush>> {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let (writer, flush) = if batched {
        let (writer, flush) = log_writer::BatchedWriter::start(std::io::stderr())?;
        (BoxMakeWriter::new(writer), Some(flush))
    } else {
        (BoxMakeWriter::new(std::io::stderr), None)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(flush)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};
    use sts_guard::webhook::Limits;

    /// The limits' flags default to what `Limits::default()` says.
    #[test]
    fn the_limits_flags_default_to_the_limits_default() {
        let cli = Cli::parse_from(["sts-guard", "serve", "--cert", "c", "--key", "k"]);
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let (flags, default) = (args.config.limits, Limits::default());
        assert_eq!(
            (
                flags.header_read_timeout,
                flags.handshake_timeout,
                flags.request_timeout,
                flags.max_connections
            ),
            (
                default.header_read_timeout,
                default.handshake_timeout,
                default.request_timeout,
                default.max_connections
            )
        );
    }

    /// README: every flag also reads an environment variable.
    #[test]
    fn every_flag_reads_an_environment_variable() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_positional() && arg.get_env().is_none() {
                    missing.push(format!("{path} --{}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut command = Cli::command();
        command.build();
        let mut missing = Vec::new();
        walk(&command, "sts-guard", &mut missing);
        assert!(
            missing.is_empty(),
            "flags without an environment variable: {missing:?}"
        );
    }
}
