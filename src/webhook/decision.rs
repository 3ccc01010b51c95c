//! The review's outcomes as the API server takes them: one denial message
//! (capped), warnings cut to what the API server passes on (256 bytes each,
//! 4 KiB in all), the patch, and 403 `Forbidden` so kubectl reports a
//! denial as it reports an RBAC or policy one.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use json_patch::Patch;
use kube::core::Status;
use kube::core::admission::AdmissionResponse;

use crate::review::{Action, Mutation, ObjectRef, Outcome, Validation};

/// The answer to one admission request, rendered for the API server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// `None`: allowed. `Some(message)`: denied with that message.
    pub denial: Option<String>,
    /// Shown by kubectl as `Warning: ...`; cut to the API server's limits.
    pub warnings: Vec<String>,
    /// RFC 6902 patch; `None` when nothing changes.
    pub patch: Option<Patch>,
    /// Every finding and what was done with it (for logs and metrics).
    pub outcomes: Vec<Outcome>,
    /// Names of the mutations the patch applies (`parallel`, `startup-probe`).
    pub mutations: Vec<&'static str>,
}

impl Decision {
    pub fn validated(object: ObjectRef<'_>, validation: Validation) -> Decision {
        Decision::validated_showing(object, validation, |_| true)
    }

    /// [`Decision::validated`], with the findings `shown` refuses left out
    /// of the answer but kept for logs and metrics: they are the API
    /// server's to report (`serve --admission-policies`), and a user sees
    /// each finding once.
    pub fn validated_showing(
        object: ObjectRef<'_>,
        validation: Validation,
        shown: impl Fn(&Outcome) -> bool,
    ) -> Decision {
        // Borrowed unless something is left out: the usual answer copies
        // nothing.
        let visible: Cow<'_, [Outcome]> = if validation.outcomes.iter().all(&shown) {
            Cow::Borrowed(&validation.outcomes)
        } else {
            Cow::Owned(
                validation
                    .outcomes
                    .iter()
                    .filter(|o| shown(o))
                    .cloned()
                    .collect(),
            )
        };
        let denial = denial_message(object, &visible);
        let warnings = warning_list(&visible, &validation.notes);
        drop(visible);
        Decision {
            denial,
            warnings,
            outcomes: validation.outcomes,
            ..Decision::default()
        }
    }

    pub fn mutated(mutation: Mutation) -> Decision {
        Decision {
            warnings: fit_warnings(mutation.notes),
            patch: mutation.patch,
            mutations: mutation.mutations,
            ..Decision::default()
        }
    }

    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }

    /// The encoded AdmissionReview of an allow (with or without warnings
    /// and a patch) for the request `uid`, written straight into its bytes
    /// instead of built as kube's `AdmissionResponse` and serialized: every
    /// field as encoding [`Decision::into_response`]`(uid).into_review()`
    /// gives it, but the patch in base64, as the API server's own encoding
    /// of a `[]byte` is, where kube's `Vec<u8>` writes a JSON array of
    /// numbers, one per byte (the API server reads both; the array took a
    /// fifth of a typical `/mutate`'s instructions). `None` for a denial.
    pub fn encoded_allow(&self, uid: &str) -> Option<Vec<u8>> {
        if self.denial.is_some() {
            return None;
        }
        const BEFORE_UID: &[u8] =
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#;
        const ALLOWED: &[u8] = br#","allowed":true,"status":{}"#;
        let mut bytes = Vec::with_capacity(512);
        bytes.extend_from_slice(BEFORE_UID);
        // Writing JSON values into a Vec cannot fail; if it ever does,
        // `None` leaves the answer to kube's encoding.
        serde_json::to_writer(&mut bytes, uid).ok()?;
        bytes.extend_from_slice(ALLOWED);
        if let Some(patch) = &self.patch {
            // Encoded whole, then in base64 at once: base64's writer takes
            // serde_json's many small writes one by one, at five times the
            // cost.
            let json = serde_json::to_vec(patch).ok()?;
            bytes.extend_from_slice(br#","patch":""#);
            let start = bytes.len();
            bytes.resize(start + base64::encoded_len(json.len(), true)?, 0);
            STANDARD.encode_slice(&json, &mut bytes[start..]).ok()?;
            bytes.extend_from_slice(br#"","patchType":"JSONPatch""#);
        }
        if !self.warnings.is_empty() {
            bytes.extend_from_slice(br#","warnings":"#);
            serde_json::to_writer(&mut bytes, &self.warnings).ok()?;
        }
        bytes.extend_from_slice(b"}}");
        Some(bytes)
    }

    /// The decision as the API server expects it, for the request `uid`.
    pub fn into_response(self, uid: &str) -> AdmissionResponse {
        let mut response = response(uid);
        if !self.warnings.is_empty() {
            response.warnings = Some(self.warnings);
        }
        if let Some(message) = self.denial {
            return denied(response, message, 403, "Forbidden");
        }
        match self.patch {
            // Serializing a Patch of JSON values cannot fail; if it ever
            // does, allowing unpatched is the safe answer for a mutation.
            Some(patch) => response.clone().with_patch(patch).unwrap_or(response),
            None => response,
        }
    }
}

/// An allowed `admission.k8s.io/v1` response for request `uid`, as kube
/// builds one from a request (without needing the request itself).
pub fn response(uid: &str) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid("");
    response.uid = uid.to_string();
    response.allowed = true;
    response.result = Status::default();
    response
}

/// `response` turned into a denial with `code` and `reason`.
pub fn denied(
    response: AdmissionResponse,
    message: String,
    code: u16,
    reason: &str,
) -> AdmissionResponse {
    let mut denied = response.deny(message);
    denied.result.code = code;
    denied.result.reason = reason.into();
    denied
}

/// The API server truncates each warning past this many bytes.
pub const MAX_WARNING_BYTES: usize = 256;
/// ...and drops warnings past this many bytes in all.
pub const MAX_WARNINGS_TOTAL_BYTES: usize = 4096;

/// A denial lists at most this many problems...
pub const MAX_DENIAL_PROBLEMS: usize = 20;
/// ...each cut to this many bytes...
pub const MAX_DENIAL_LINE_BYTES: usize = 512;
/// ...within this many bytes in all; the rest are counted ("and N more").
pub const MAX_DENIAL_BYTES: usize = 8 * 1024;

/// One message naming every finding that denies (up to the caps above: a
/// StatefulSet with thousands of containers gets a readable message, not
/// megabytes), or `None` if none does.
pub fn denial_message(object: ObjectRef<'_>, outcomes: &[Outcome]) -> Option<String> {
    let denied: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.action == Action::Deny)
        .collect();
    if denied.is_empty() {
        return None;
    }
    let n = denied.len();
    let mut message = truncate(
        &format!(
            "statefulset {}/{} has {} problem{}:",
            object.namespace,
            object.name,
            n,
            if n == 1 { "" } else { "s" }
        ),
        MAX_DENIAL_LINE_BYTES,
    );
    // Room kept for the closing "and N more" line.
    const RESERVE: usize = 96;
    for (i, o) in denied.iter().enumerate() {
        let line = truncate(&o.finding.to_string(), MAX_DENIAL_LINE_BYTES);
        let last = i + 1 == n;
        let budget = if last {
            MAX_DENIAL_BYTES
        } else {
            MAX_DENIAL_BYTES - RESERVE
        };
        if i == MAX_DENIAL_PROBLEMS || message.len() + 3 + line.len() > budget {
            message.push_str(&format!(
                "\n- ... and {} more (run sts-guard check for all)",
                n - i
            ));
            break;
        }
        message.push_str("\n- ");
        message.push_str(&line);
    }
    Some(message)
}

/// Warnings for every finding that warns, then the notes, most important
/// first, each and all within the API server's limits.
pub fn warning_list(outcomes: &[Outcome], notes: &[String]) -> Vec<String> {
    let texts = outcomes
        .iter()
        .filter_map(|o| match &o.action {
            Action::Warn(reason) => Some(format!(
                "{}{}: {}",
                o.finding.summary(),
                reason.note(),
                o.finding.fix
            )),
            _ => None,
        })
        .chain(notes.iter().cloned());
    fit_warnings(texts)
}

/// Cuts each warning to [`MAX_WARNING_BYTES`] and keeps the list within
/// [`MAX_WARNINGS_TOTAL_BYTES`], saying how many were left out.
pub fn fit_warnings(texts: impl IntoIterator<Item = String>) -> Vec<String> {
    // Room kept for the closing "N more" line (67 bytes at 10,000 more).
    const RESERVE: usize = 96;
    let all: Vec<String> = texts
        .into_iter()
        .map(|t| truncate(&t, MAX_WARNING_BYTES))
        .collect();
    let mut kept = Vec::new();
    let mut total = 0;
    for (i, text) in all.iter().enumerate() {
        let rest = all.len() - i - 1;
        let budget = if rest == 0 {
            MAX_WARNINGS_TOTAL_BYTES
        } else {
            MAX_WARNINGS_TOTAL_BYTES - RESERVE
        };
        if total + text.len() > budget {
            kept.push(format!(
                "... and {} more sts-guard warnings (run sts-guard check for all)",
                all.len() - i
            ));
            break;
        }
        total += text.len();
        kept.push(text.clone());
    }
    kept
}

/// Single line, at most `max` bytes. A cut falls between words (texts put
/// the rule id, location and problem first, so those survive), or on a
/// character boundary when a single word is too long.
fn truncate(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() <= max {
        return line;
    }
    const ELLIPSIS: &str = "...";
    let mut end = max - ELLIPSIS.len();
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let end = match line[..end].rfind(' ') {
        Some(space) if space >= max / 2 => space,
        _ => end,
    };
    format!(
        "{}{ELLIPSIS}",
        line[..end].trim_end_matches([' ', ':', ','])
    )
}

/// Which webhook is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Validate,
    Mutate,
}

impl Endpoint {
    pub const fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// The `decision` label of `sts_guard_admission_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionLabel {
    Allowed,
    Warned,
    Mutated,
    Denied,
    /// A StatefulSet request whose object does not decode, or a body that
    /// is not an AdmissionReview.
    Invalid,
    /// A request for another kind, allowed unchecked.
    NotStatefulSet,
}

impl DecisionLabel {
    /// Every label, in declaration order (`label as usize` indexes it).
    pub const ALL: [DecisionLabel; 6] = [
        DecisionLabel::Allowed,
        DecisionLabel::Warned,
        DecisionLabel::Mutated,
        DecisionLabel::Denied,
        DecisionLabel::Invalid,
        DecisionLabel::NotStatefulSet,
    ];

    /// The label of a reviewed request.
    pub fn of(decision: &Decision) -> DecisionLabel {
        if !decision.allowed() {
            DecisionLabel::Denied
        } else if decision.patch.is_some() {
            DecisionLabel::Mutated
        } else if !decision.warnings.is_empty() {
            DecisionLabel::Warned
        } else {
            DecisionLabel::Allowed
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            DecisionLabel::Allowed => "allowed",
            DecisionLabel::Warned => "warned",
            DecisionLabel::Mutated => "mutated",
            DecisionLabel::Denied => "denied",
            DecisionLabel::Invalid => "invalid",
            DecisionLabel::NotStatefulSet => "not-statefulset",
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allow_is_encoded_as_kube_encodes_it_but_the_patch_in_base64() {
        let patch: Patch = serde_json::from_value(serde_json::json!([
            {"op": "add", "path": "/spec/podManagementPolicy", "value": "Parallel"},
            {"op": "add", "path": "/metadata/annotations/a~1b", "value": "\"quoted\" ✓"},
        ]))
        .unwrap();
        let warnings = vec!["careful".to_string(), "a \"quoted\" ✓ warning\n".into()];
        let allows = [
            Decision::default(),
            Decision {
                warnings: warnings.clone(),
                ..Decision::default()
            },
            Decision {
                patch: Some(patch.clone()),
                ..Decision::default()
            },
            Decision {
                warnings,
                patch: Some(patch),
                ..Decision::default()
            },
        ];
        for uid in [
            "7f0b2a8e-3c1d-4f5e-9a6b-2c3d4e5f6a7b",
            "",
            "a \"quoted\" \\ uid\u{1}\n",
            "ünïcødé ✓",
        ] {
            for allow in &allows {
                let kube =
                    serde_json::to_vec(&allow.clone().into_response(uid).into_review()).unwrap();
                let ours = allow.encoded_allow(uid).expect("an allow");
                if allow.patch.is_none() {
                    // Byte for byte.
                    assert_eq!(
                        String::from_utf8(ours),
                        String::from_utf8(kube),
                        "{uid:?} {allow:?}"
                    );
                    continue;
                }
                // Byte for byte once the patch's base64 is written as
                // kube writes its bytes, a JSON array of numbers.
                let ours = String::from_utf8(ours).unwrap();
                let (head, rest) = ours.split_once(r#""patch":""#).expect("a patch");
                let (base64, tail) = rest.split_once('"').unwrap();
                let numbers = serde_json::to_string(&STANDARD.decode(base64).unwrap()).unwrap();
                assert_eq!(
                    format!(r#"{head}"patch":{numbers}{tail}"#),
                    String::from_utf8(kube).unwrap(),
                    "{uid:?} {allow:?}"
                );
            }
        }
        let denial = Decision {
            denial: Some("no".into()),
            ..Decision::default()
        };
        assert_eq!(denial.encoded_allow("u"), None);
    }

    #[test]
    fn long_warnings_are_cut_on_char_boundaries() {
        let w = truncate(&"é".repeat(300), MAX_WARNING_BYTES);
        assert!(w.len() <= MAX_WARNING_BYTES);
        assert!(w.ends_with("..."));
    }

    #[test]
    fn long_warnings_are_cut_between_words() {
        let text = format!(
            "[headless-service] spec.serviceName {} is wrong: fix it",
            "word ".repeat(60)
        );
        let w = truncate(&text, MAX_WARNING_BYTES);
        assert!(w.len() <= MAX_WARNING_BYTES, "{}", w.len());
        assert!(w.ends_with(" word..."), "{w}");
        assert!(w.starts_with("[headless-service] spec.serviceName "), "{w}");
    }

    #[test]
    fn every_decision_label_indexes_its_place() {
        for (i, label) in DecisionLabel::ALL.iter().enumerate() {
            assert_eq!(*label as usize, i, "{label:?}");
        }
    }

    #[test]
    fn control_characters_become_spaces() {
        assert_eq!(truncate("a\nb\tc", 10), "a b c");
    }

    #[test]
    fn the_list_stays_under_four_kib_and_says_what_it_dropped() {
        let many = (0..100).map(|i| format!("{i:03} {}", "x".repeat(200)));
        let kept = fit_warnings(many);
        let total: usize = kept.iter().map(String::len).sum();
        assert!(total <= MAX_WARNINGS_TOTAL_BYTES, "{total}");
        assert!(kept[0].starts_with("000"), "most important first");
        let last = kept.last().unwrap();
        assert!(last.contains("more sts-guard warnings"), "{last}");
        let dropped: usize = last.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(kept.len() - 1 + dropped, 100);
    }

    #[test]
    fn a_short_list_is_kept_whole() {
        let kept = fit_warnings(vec!["a".to_string(), "b".to_string()]);
        assert_eq!(kept, vec!["a", "b"]);
    }
}
