//! Arbitrary text into the policy-file parser; a policy that parses is
//! queried the way a review does, and a rule added after the first release
//! is enforced only where the policy names it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sts_guard::policy::{Mode, Policy};
use sts_guard::rules::RULES;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(policy) = Policy::from_yaml(&text, "fuzz.yaml") else {
        return;
    };
    let mut namespaces: Vec<&str> = policy.spec.namespaces.keys().map(String::as_str).collect();
    namespaces.extend(policy.exemptions().iter().map(|e| e.namespace.as_str()));
    namespaces.push("default");
    for ns in namespaces {
        let _ = policy.rule_settings(ns);
        let _ = policy.owner_exemptions_allowed(ns);
        let m = policy.mutations(ns);
        assert!(
            !m.startup_timeout.is_zero(),
            "zero startup timeout accepted"
        );
        for rule in RULES {
            let mode = policy.mode(ns, rule.id);
            if rule.denies_only_when_named && mode == Mode::Enforce {
                let named = policy.spec.rules.contains_key(&rule.id)
                    || policy
                        .spec
                        .namespaces
                        .get(ns)
                        .is_some_and(|n| n.rules.contains_key(&rule.id));
                assert!(named, "{} enforced in {ns:?} unnamed", rule.id);
            }
            let _ = policy.exemption(ns, "web", rule.id, jiff::Timestamp::UNIX_EPOCH);
        }
    }
});
