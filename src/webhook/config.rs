//! What `serve` is told. These structs are also `serve`'s flags: the
//! binary flattens [`ServeConfig`] into its command line, so each setting,
//! its flag, environment variable, default and help are written once, here.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, FromArgMatches};

use super::managed_certs::ManagedConfig;
use crate::certs::managed::Settings;

/// Everything `serve` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub tls: TlsSource,
    /// Address of the TLS webhook listener.
    #[arg(long, env = "STS_GUARD_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP Prometheus listener (GET /metrics); "off" disables it.
    // The full path: clap's derive reads a bare `Option` as "the flag may
    // be absent"; here the value itself may be "off".
    #[arg(long, env = "STS_GUARD_METRICS_LISTEN", default_value = "0.0.0.0:9090", value_parser = MetricsListen)]
    pub metrics_listen: std::option::Option<SocketAddr>,
    #[command(flatten)]
    pub policy: crate::policy::Source,
    /// Keep the field rules also enforced in the API server itself: apply the ValidatingAdmissionPolicies `sts-guard policy vap` prints for the policy in effect, and keep them in sync (needs admissionregistration.k8s.io/v1 and RBAC to write them).
    #[arg(long, env = "STS_GUARD_ADMISSION_POLICIES")]
    pub admission_policies: bool,
    /// Only serve clients presenting a certificate signed by this CA (the API server's).
    #[arg(long, env = "STS_GUARD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Take Services from these manifests instead of the cluster (benchmarks, demos).
    #[arg(long, env = "STS_GUARD_SERVICES_FROM", value_delimiter = ',')]
    pub services_from: Option<Vec<PathBuf>>,
    /// Deadline of the API lookup made when a Service is not in the watch cache.
    #[arg(long, env = "STS_GUARD_LOOKUP_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub lookup_timeout: Duration,
    /// How often the certificate and policy files are checked for changes.
    #[arg(long, env = "STS_GUARD_RELOAD_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,
    /// After SIGTERM, keep serving (not ready) this long so endpoints drop this pod.
    #[arg(long, env = "STS_GUARD_SHUTDOWN_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    /// Then wait at most this long for in-flight requests.
    #[arg(long, env = "STS_GUARD_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    #[command(flatten)]
    pub limits: Limits,
}

/// `--metrics-listen`: an address, or "off" (or empty) for none.
#[derive(Clone)]
struct MetricsListen;

impl clap::builder::TypedValueParser for MetricsListen {
    type Value = Option<SocketAddr>;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let value = clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)?;
        match value.as_str() {
            "off" | "" => Ok(None),
            addr => addr
                .parse()
                .map(Some)
                .map_err(|e| refused(format!("--metrics-listen {addr:?}: {e}"))),
        }
    }
}

/// A flag's value refused in a sentence of its own: a raw clap error,
/// which prints as `error: SENTENCE` (no usage, no hint) unless formatted
/// with a command.
fn refused(sentence: String) -> clap::Error {
    clap::Error::raw(clap::error::ErrorKind::ValueValidation, sentence + "\n")
}

/// Limits on what a client can hold (docs/reliability.md lists them all).
/// Each default in the flags is [`Limits::default`]'s (a test holds them
/// equal).
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Headers must arrive within this after a request starts; an idle
    /// keep-alive connection is closed after this too.
    #[arg(
        long,
        env = "STS_GUARD_HEADER_READ_TIMEOUT",
        default_value = "5s",
        value_parser = humantime::parse_duration,
        help = "Close connections whose request headers take longer than this."
    )]
    pub header_read_timeout: Duration,
    /// A TLS handshake must finish within this.
    #[arg(
        long,
        env = "STS_GUARD_HANDSHAKE_TIMEOUT",
        default_value = "5s",
        value_parser = humantime::parse_duration,
        help = "Close connections whose TLS handshake takes longer than this."
    )]
    pub handshake_timeout: Duration,
    /// A request, body included, must be read and answered within this (408
    /// otherwise), so a client trickling its body cannot hold a connection;
    /// the API server gives up at the webhook's `timeoutSeconds` (≤ 10 s)
    /// anyway.
    #[arg(
        long,
        env = "STS_GUARD_REQUEST_TIMEOUT",
        default_value = "10s",
        value_parser = humantime::parse_duration,
        help = "Answer 408 to a request not read and answered within this."
    )]
    pub request_timeout: Duration,
    /// Connections beyond this are closed at once.
    #[arg(
        long,
        env = "STS_GUARD_MAX_CONNECTIONS",
        default_value_t = 1024,
        help = "Refuse connections beyond this many."
    )]
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// Where the serving certificate comes from. Its flags are [`TlsFlags`];
/// which of the two it is, and the checks clap's attributes cannot express
/// (the validities only matter with `--tls-secret`), are decided when the
/// flags are read ([`TlsSource::from_arg_matches`]).
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// `--cert`, `--key`: files, re-read when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// `--tls-secret`, `--webhook-configuration`: sts-guard's own.
    Managed(ManagedConfig),
}

/// The flags of [`TlsSource`].
#[derive(Debug, clap::Args)]
struct TlsFlags {
    /// Serving certificate (PEM chain); re-read when it changes. Or managed certificates: --tls-secret.
    #[arg(
        long,
        env = "STS_GUARD_CERT",
        requires = "key",
        conflicts_with = "tls_secret",
        required_unless_present = "tls_secret"
    )]
    cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM); re-read when it changes.
    #[arg(
        long,
        env = "STS_GUARD_KEY",
        requires = "cert",
        conflicts_with = "tls_secret"
    )]
    key: Option<PathBuf>,
    /// Managed certificates: the Secret (NAMESPACE/NAME) sts-guard creates if absent, serves from and renews.
    #[arg(long, env = "STS_GUARD_TLS_SECRET", value_name = "NAMESPACE/NAME", requires_all = ["webhook_configuration", "cert_dns"])]
    tls_secret: Option<String>,
    /// Managed certificates: the Validating- and MutatingWebhookConfiguration whose caBundle sts-guard keeps current.
    #[arg(
        long,
        env = "STS_GUARD_WEBHOOK_CONFIGURATION",
        value_name = "NAME",
        requires = "tls_secret"
    )]
    webhook_configuration: Option<String>,
    /// Managed certificates: DNS name of the serving certificate (repeatable).
    #[arg(
        long,
        env = "STS_GUARD_CERT_DNS",
        value_name = "NAME",
        value_delimiter = ',',
        requires = "tls_secret"
    )]
    cert_dns: Vec<String>,
    /// Managed certificates: IP address of the serving certificate (repeatable).
    #[arg(
        long,
        env = "STS_GUARD_CERT_IP",
        value_name = "ADDR",
        value_delimiter = ',',
        requires = "tls_secret"
    )]
    cert_ip: Vec<IpAddr>,
    /// Managed certificates: validity of the serving certificate; renewed after two thirds.
    #[arg(long, env = "STS_GUARD_CERT_VALIDITY", default_value = "90d", value_parser = humantime::parse_duration)]
    cert_validity: Duration,
    /// Managed certificates: validity of the CA; renewed after two thirds, with an overlap.
    #[arg(long, env = "STS_GUARD_CA_VALIDITY", default_value = "1825d", value_parser = humantime::parse_duration)]
    ca_validity: Duration,
}

impl TlsFlags {
    /// The validities are checked only with `--tls-secret`: with `--cert`
    /// they are not used, and their flags are accepted as they are.
    fn source(self) -> Result<TlsSource, String> {
        match (self.cert, self.key, self.tls_secret) {
            (Some(cert), Some(key), None) => Ok(TlsSource::Files { cert, key }),
            (None, None, Some(secret)) => {
                let (namespace, secret) =
                    ManagedConfig::parse_secret(&secret).map_err(|e| e.to_string())?;
                let validity = |d: Duration, flag: &str| match time::Duration::try_from(d) {
                    Ok(d) if d >= time::Duration::minutes(1) => Ok(d),
                    _ => Err(format!("{flag} must be at least 1m")),
                };
                Ok(TlsSource::Managed(ManagedConfig {
                    namespace,
                    secret,
                    webhook_configuration: self.webhook_configuration.unwrap_or_default(),
                    settings: Settings {
                        dns: self.cert_dns,
                        ips: self.cert_ip,
                        cert_validity: validity(self.cert_validity, "--cert-validity")?,
                        ca_validity: validity(self.ca_validity, "--ca-validity")?,
                    },
                }))
            }
            _ => Err("give --cert and --key, or --tls-secret (managed certificates)".into()),
        }
    }
}

/// `TlsSource`'s flags are [`TlsFlags`]'; reading them makes the source.
impl clap::Args for TlsSource {
    fn group_id() -> Option<clap::Id> {
        TlsFlags::group_id()
    }

    fn augment_args(cmd: clap::Command) -> clap::Command {
        TlsFlags::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        TlsFlags::augment_args_for_update(cmd)
    }
}

impl FromArgMatches for TlsSource {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        TlsFlags::from_arg_matches(matches)?
            .source()
            .map_err(refused)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::{ServeConfig, TlsSource};

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        config: ServeConfig,
    }

    /// As the binary reads its command line: the matches, then the config.
    fn parse(flags: &[&str]) -> Result<ServeConfig, clap::Error> {
        let matches = Serve::command()
            .try_get_matches_from(std::iter::once("serve").chain(flags.iter().copied()))?;
        Serve::from_arg_matches(&matches).map(|serve| serve.config)
    }

    /// Managed certificates' flags but `--tls-secret`.
    const MANAGED: [&str; 4] = [
        "--webhook-configuration",
        "sts-guard",
        "--cert-dns",
        "a.example,b.example",
    ];

    #[test]
    fn cert_and_key_are_files() {
        let config = parse(&["--cert", "c.pem", "--key", "k.pem"]).unwrap();
        let TlsSource::Files { cert, key } = config.tls else {
            panic!("files")
        };
        assert_eq!(
            (cert.to_str(), key.to_str()),
            (Some("c.pem"), Some("k.pem"))
        );
        // Not used with files, so not checked either.
        assert!(parse(&["--cert", "c", "--key", "k", "--cert-validity", "1s"]).is_ok());
    }

    #[test]
    fn tls_secret_is_managed() {
        let config = parse(
            &[
                &MANAGED[..],
                &["--tls-secret", "ns/name", "--cert-ip", "10.0.0.1"],
                &["--cert-validity", "1m"],
            ]
            .concat(),
        )
        .unwrap();
        let TlsSource::Managed(managed) = config.tls else {
            panic!("managed")
        };
        assert_eq!(
            (managed.namespace.as_str(), managed.secret.as_str()),
            ("ns", "name")
        );
        assert_eq!(managed.webhook_configuration, "sts-guard");
        assert_eq!(managed.settings.dns, ["a.example", "b.example"]);
        assert_eq!(
            managed.settings.ips,
            ["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(managed.settings.cert_validity, time::Duration::minutes(1));
        assert_eq!(managed.settings.ca_validity, time::Duration::days(1825));
    }

    /// The sentences `serve` has always printed, as `error: SENTENCE`.
    #[test]
    fn managed_flags_that_do_not_fit_are_refused_in_a_sentence() {
        for (extra, sentence) in [
            (
                &["--tls-secret", "no-slash"][..],
                "--tls-secret \"no-slash\": expected NAMESPACE/NAME",
            ),
            (
                &["--tls-secret", "a/b", "--cert-validity", "59s"],
                "--cert-validity must be at least 1m",
            ),
            (
                &["--tls-secret", "a/b", "--ca-validity", "0s"],
                "--ca-validity must be at least 1m",
            ),
        ] {
            let e = match parse(&[&MANAGED[..], extra].concat()) {
                Ok(_) => panic!("{extra:?} accepted"),
                Err(e) => e,
            };
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
            assert_eq!(e.exit_code(), 2);
            assert_eq!(e.to_string(), format!("error: {sentence}\n"));
        }
    }

    #[test]
    fn metrics_listen_is_an_address_or_off() {
        let listen = |flags: &[&str]| {
            parse(&[&["--cert", "c", "--key", "k"][..], flags].concat()).map(|c| c.metrics_listen)
        };
        assert_eq!(listen(&[]).unwrap(), Some("0.0.0.0:9090".parse().unwrap()));
        assert_eq!(
            listen(&["--metrics-listen", "127.0.0.1:1"]).unwrap(),
            Some("127.0.0.1:1".parse().unwrap())
        );
        assert_eq!(listen(&["--metrics-listen", "off"]).unwrap(), None);
        assert_eq!(listen(&["--metrics-listen", ""]).unwrap(), None);
        let e = listen(&["--metrics-listen", "nine"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error: --metrics-listen \"nine\": invalid socket address syntax\n"
        );
    }
}
