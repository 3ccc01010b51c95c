//! Errors of the kube client in words for people: a TLS failure (the
//! usual first problem with a kubeconfig) is named and explained rather
//! than shown as rustls' enum names (`received fatal alert: DecryptError`).

use std::error::Error;

use rustls::{AlertDescription, CertificateError};

/// The error and the causes its message does not already include; when one
/// of them is a TLS error or an API server's answer, that in words instead
/// of the causes (after the error's own message when that already says it:
/// an error that keeps its cause and words it in its message).
pub fn describe(e: &(dyn Error + 'static)) -> String {
    let mut cause: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(words) = in_words(c) {
            let message = e.to_string();
            let worded = !std::ptr::addr_eq(c, e) && message.contains(&words);
            return if worded { message } else { words };
        }
        cause = c.source();
    }
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}

/// A TLS error or an API server's answer, in words.
fn in_words(e: &(dyn Error + 'static)) -> Option<String> {
    if let Some(tls) = as_tls(e) {
        return Some(tls_in_words(tls));
    }
    // kube's own Display of an API answer appends its Debug form.
    if let Some(kube::Error::Api(status)) = e.downcast_ref::<kube::Error>() {
        return Some(status_in_words(status));
    }
    e.downcast_ref::<kube::core::Status>().map(status_in_words)
}

/// `the API server answered 403 Forbidden: secrets "x" is forbidden: ...`
fn status_in_words(status: &kube::core::Status) -> String {
    let reason = if status.reason.is_empty() {
        String::new()
    } else {
        format!(" {}", status.reason)
    };
    format!(
        "the API server answered {}{reason}: {}",
        status.code, status.message
    )
}

fn as_tls<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    // tokio-rustls reports TLS failures as io::Error wrapping the rustls
    // error, and io::Error's source() skips what it wraps.
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn tls_in_words(e: &rustls::Error) -> String {
    use AlertDescription as A;
    use CertificateError as C;
    match e {
        rustls::Error::AlertReceived(
            A::DecryptError | A::BadCertificate | A::CertificateUnknown | A::UnknownCA | A::CertificateRequired | A::AccessDenied,
        ) => "the API server refused this client's TLS certificate: check that the kubeconfig's client-key belongs to its client-certificate and that a CA the API server trusts signed it".into(),
        rustls::Error::AlertReceived(alert) => format!(
            "the API server ended the TLS handshake (alert {})",
            alert_name(*alert)
        ),
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the API server's certificate is not signed by the kubeconfig's certificate-authority".into()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the API server's certificate does not name the host of the kubeconfig's server URL".into()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the API server's certificate has expired".into()
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the API server's certificate is not valid yet (check the clocks)".into()
        }
        rustls::Error::InconsistentKeys(_) => {
            "the kubeconfig's client-key does not belong to its client-certificate".into()
        }
        other => format!("TLS failed: {other}"),
    }
}

/// `DecryptError` → `decrypt_error`, the name RFC 8446 gives the alert.
fn alert_name(alert: AlertDescription) -> String {
    let debug = alert
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| u8::from(alert).to_string());
    let mut out = String::new();
    for (i, ch) in debug.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_client_certificate_is_explained_without_enum_names() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::DecryptError),
        );
        let text = describe(&io);
        assert!(
            text.contains("client-key belongs to its client-certificate"),
            "{text}"
        );
        assert!(!text.contains("DecryptError"));
    }

    #[test]
    fn an_api_answer_is_shown_without_its_debug_form() {
        let status = kube::core::Status {
            code: 403,
            reason: "Forbidden".into(),
            message: r#"secrets "x" is forbidden: no"#.into(),
            ..Default::default()
        };
        let e = kube::Error::Api(Box::new(status));
        assert_eq!(
            describe(&e),
            r#"the API server answered 403 Forbidden: secrets "x" is forbidden: no"#
        );
    }

    #[test]
    fn other_alerts_use_their_rfc_names() {
        let e = rustls::Error::AlertReceived(AlertDescription::ProtocolVersion);
        assert_eq!(
            describe(&e),
            "the API server ended the TLS handshake (alert protocol_version)"
        );
    }
}
