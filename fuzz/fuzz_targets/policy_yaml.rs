//! Arbitrary text into the policy-file parser; a policy that parses is
//! queried the way a review does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sts_guard::policy::Policy;
use sts_guard::rules::RULES;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(policy) = Policy::from_yaml(&text, "fuzz.yaml") else {
        return;
    };
    let _ = policy.rule_settings();
    let mut namespaces: Vec<&str> = policy.namespaces.keys().map(String::as_str).collect();
    namespaces.extend(policy.exemptions.iter().map(|e| e.namespace.as_str()));
    namespaces.push("default");
    for ns in namespaces {
        let _ = policy.owner_exemptions_allowed(ns);
        let m = policy.mutations(ns);
        assert!(
            !m.startup_timeout.is_zero(),
            "zero startup timeout accepted"
        );
        for rule in RULES {
            let _ = policy.mode(ns, rule.id);
            let _ = policy.exemption(ns, "web", rule.id);
        }
    }
});
