//! The reader against serde_json: whatever it reads, serde_json reads to
//! the same value; whatever serde_json skips, it skips.

use proptest::prelude::*;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::super::{Admission, ReviewBody};
use super::{Unsupported, from_str};

const FIXTURE: &str = include_str!("../../../../tests/fixtures/admission/create-web.json");

/// The reader's value, when it gives one, is serde_json's.
fn reads_as_serde_json(text: &str) -> bool {
    match from_str::<Value>(text) {
        Ok(ours) => {
            let theirs = serde_json::from_str::<Value>(text)
                .unwrap_or_else(|e| panic!("serde_json refuses {text:?} ({e}), the reader not"));
            assert_eq!(ours, theirs, "on {text:?}");
            true
        }
        Err(Unsupported) => false,
    }
}

/// Skipped: accepted by the reader exactly when serde_json accepts it.
fn skips_as_serde_json(text: &str) -> bool {
    let ours = from_str::<IgnoredAny>(text).is_ok();
    let theirs = serde_json::from_str::<IgnoredAny>(text).is_ok();
    assert_eq!(
        ours, theirs,
        "skipping {text:?}: reader {ours}, serde_json {theirs}"
    );
    ours
}

/// `run` with the SSE2 scans, where the CPU would choose the wide ones.
#[cfg(target_arch = "x86_64")]
fn narrow<T>(run: impl FnOnce() -> T) -> T {
    /// Puts the CPU's choice back, also when `run` panics.
    struct Wide;
    impl Drop for Wide {
        fn drop(&mut self) {
            super::blocks::NARROW.with(|narrow| narrow.set(false));
        }
    }
    let _wide_again = Wide;
    super::blocks::NARROW.with(|narrow| narrow.set(true));
    run()
}

/// Runs `check` with the 64-byte scans the CPU chooses (32 bytes a compare
/// where it has AVX2) and again with the SSE2 ones: both answer alike.
fn at_both_widths(check: impl Fn()) {
    check();
    #[cfg(target_arch = "x86_64")]
    narrow(check);
}

/// A string of `n` bytes of `x` (no hex digit) with `inner` at `at`, quoted.
fn string_with(inner: &str, at: usize, n: usize) -> String {
    let mut s = "x".repeat(n);
    s.insert_str(at.min(n), inner);
    format!("\"{s}\"")
}

#[test]
fn skips_strings_as_serde_json_does_at_every_place_in_a_block() {
    at_both_widths(|| {
        let accepted = [
            r#"\""#,
            r"\\",
            r"\/",
            r"\b\f\n\r\t",
            r"\u00e9",
            r"\uD800",
            r"\uDC00\uD800",
            r"\u0000",
            r#"\"\"\"\"\"\"\"\"\"\""#,
            "é漢字🙂",
            "\u{7f}",
        ];
        let refused = [
            r"\x", r"\u12", r"\u12g4", r"\U1234", "\u{1}", "\n", "\t", "\u{1f}", r"\",
        ];
        // Every offset of a 16-byte block and across its end.
        for at in 0..40 {
            for inner in accepted {
                assert!(skips_as_serde_json(&string_with(inner, at, 40)));
            }
            for inner in refused {
                assert!(!skips_as_serde_json(&string_with(inner, at, 40)));
            }
        }
        // Cut short: no closing quote, or a backslash at the very end.
        for n in 0..40 {
            let open = format!("\"{}", "a".repeat(n));
            assert!(!skips_as_serde_json(&open));
            assert!(!skips_as_serde_json(&format!("{open}\\")));
            assert!(!skips_as_serde_json(&format!("{open}\\\"")));
        }
    });
}

/// A string read from a body is borrowed whole, whatever its length and
/// wherever it ends (the first 32 bytes are checked inline).
#[test]
fn reads_plain_strings_of_every_length() {
    for n in 0..100 {
        let text = format!("[\"{}\"{}]", "k".repeat(n), ",0".repeat(30));
        assert!(reads_as_serde_json(&text), "{text}");
        let text = format!("{{\"{}\":1}}", "k".repeat(n));
        assert!(reads_as_serde_json(&text), "{text}");
    }
}

/// Long strings are scanned 64 bytes at a time, escapes found by bit
/// arithmetic: runs of backslashes of every length, ending on every byte
/// of a chunk and across its end, decide alike.
#[test]
fn skips_long_strings_as_serde_json_does_across_chunks() {
    at_both_widths(|| {
        let runs = (1..=6).map(|n| "\\".repeat(n));
        let mut inners: Vec<String> = Vec::new();
        for run in runs {
            for after in ["\"", "x", "n", "u00e9", "u12", "\u{1}", "é"] {
                inners.push(format!("{run}{after}"));
            }
        }
        inners.push(r#"\"a\"b\"c\"d\"e\"f"#.repeat(12));
        inners.push("\u{1f}".into());
        for at in 0..150 {
            for inner in &inners {
                skips_as_serde_json(&string_with(inner, at, 150));
                // The string's end near the chunk's end, the escape before it;
                // and with text after it, as in a body.
                let short = string_with(inner, at, at);
                skips_as_serde_json(&short);
                let in_body = format!("[{short}{}]", ",0".repeat(40));
                delimits(&in_body);
                reads_as_serde_json(&in_body);
            }
        }
    });
}

/// Skipped as an object or array: delimited by its brackets. Whatever
/// serde_json accepts, the reader accepts to the same end; it may accept
/// more, as what is inside is not checked.
fn delimits(text: &str) -> bool {
    let ours = from_str::<IgnoredAny>(text).is_ok();
    if serde_json::from_str::<IgnoredAny>(text).is_ok() {
        assert!(ours, "serde_json skips {text:?}, the reader not");
    }
    ours
}

#[test]
fn skips_scalars_as_serde_json_does() {
    for (text, accepted) in [
        ("0", true),
        ("-0", true),
        ("-12.5e+3", true),
        ("1E9", true),
        ("1.0e-7", true),
        (" true ", true),
        ("null", true),
        ("01", false),
        ("-", false),
        ("1.", false),
        (".5", false),
        ("1e", false),
        ("1e+", false),
        ("+1", false),
        ("tru", false),
        ("nul", false),
        ("True", false),
        ("]", false),
        ("", false),
        ("1 2", false),
    ] {
        assert_eq!(skips_as_serde_json(text), accepted, "{text:?}");
    }
}

#[test]
fn delimits_objects_and_arrays_by_their_brackets() {
    at_both_widths(|| {
        for (text, accepted) in [
            ("{}", true),
            ("[]", true),
            (" [ 1 , 2 ] ", true),
            ("\t{\n\"a\" :\r[true,false,null]}", true),
            (r#"{"a":{"b":[{"c":"d"}]}}"#, true),
            // Brackets and escaped quotes inside strings are text.
            (r#"{"k:{\"name\":\"app\"}":{}}"#, true),
            (r#"["]", "\\", "\"]", "[{"]"#, true),
            // Malformed inside: not checked, as nothing inside is built.
            ("[1,]", true),
            ("[,1]", true),
            ("[1 2]", true),
            (r#"{"a":1,}"#, true),
            (r#"{"a" 1}"#, true),
            (r#"{a:1}"#, true),
            (r#"{"a":}"#, true),
            ("[\"\u{1}\"]", true),
            // Not closed, or followed by more.
            ("[", false),
            ("{", false),
            (r#"["]"#, false),
            (r#"["\"]"#, false),
            ("[[]", false),
            ("{} x", false),
            ("[] ]", false),
        ] {
            assert_eq!(delimits(text), accepted, "{text:?}");
        }
        // Any depth: the scan keeps a count, not a stack.
        for depth in [1, 63, 64, 65, 100, 1000] {
            let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            assert!(delimits(&nested));
            assert!(!delimits(&"[".repeat(depth)));
        }
    });
}

/// Objects are delimited 64 bytes at a time: a string's quotes, its
/// escapes and the brackets in it, at every place of a chunk and across
/// its end, end the object where serde_json ends it.
#[test]
fn delimits_objects_across_chunks() {
    at_both_widths(|| {
        for inner in [
            r#"\""#, r"\\", r#"\\\""#, "]", "}", "[{", r#"\"]"#, r"\u005d",
        ] {
            for at in 0..140 {
                let string = string_with(inner, at, 140);
                for text in [
                    format!("{{\"k\":{string}}}"),
                    format!("[{string},[{{}}]]"),
                    format!("{{\"{}\":[{string}]}}", "a".repeat(at % 64)),
                ] {
                    assert!(delimits(&text), "{text}");
                    // The object ends where serde_json ends it: anything after
                    // it is refused by both.
                    assert!(!delimits(&format!("{text}]")), "{text}]");
                }
            }
        }
    });
}

/// Empty `{}` and `[]`, alone or many, end a value at its own closing
/// bracket, before or across a chunk's end; skipped as a field's value
/// with more of the body after it, the reader reads on.
#[test]
fn delimits_values_full_of_empty_objects_and_arrays() {
    at_both_widths(|| {
        for pad in 0..70 {
            let key = "k".repeat(pad);
            for value in [
                "{}".to_string(),
                "[[]]".into(),
                format!("[{}{{}}]", "{},".repeat(pad % 7)),
                format!(r#"{{"{key}":{{}},"x":[]}}"#),
                r#"[{},[],{"a":{}},[[{}]]]"#.into(),
            ] {
                let text = format!(r#"{{"{key}":{value}}}"#);
                assert!(delimits(&text), "{text}");
                assert!(!delimits(&format!("{text}]")), "{text}]");
                assert!(!delimits(&text[..text.len() - 1]), "{text} cut");
                // Skipped as a field's value, more of the body after it:
                // the reader itself reads what follows, as serde_json does.
                let field = format!(
                    r#"{{"skipped":{value},"after":"read","padding":"{}"}}"#,
                    "x".repeat(64 + pad)
                );
                let theirs = serde_json::from_str::<AfterSkipped>(&field).unwrap();
                assert_eq!(
                    from_str::<AfterSkipped>(&field).ok(),
                    Some(theirs),
                    "{field}"
                );
            }
        }
    });
}

#[test]
fn reads_values_as_serde_json_does_or_leaves_them_to_it() {
    for (text, read) in [
        (r#"{"a":"b","c":[1,-2,true,null,{}]}"#, true),
        (r#""plain""#, true),
        (r#""tab\there \"quoted\" \\ \/ \u00e9 \ud83d\ude42""#, true),
        ("18446744073709551615", true),
        ("-9223372036854775808", true),
        (r#"{"a":1,"a":2}"#, true),
        // serde_json makes these floats, or refuses them: left to it.
        ("18446744073709551616", false),
        ("-9223372036854775809", false),
        ("-0", false),
        ("1.5", false),
        ("1e3", false),
        (r#""\ud83d""#, false),
        (r#""\ude42""#, false),
        (r#""\ud83d\u0041""#, false),
        ("\"a\u{1}\"", false),
    ] {
        assert_eq!(reads_as_serde_json(text), read, "{text:?}");
    }
    // Nesting: up to 100 read, deeper left to serde_json (its limit is 128).
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    assert!(reads_as_serde_json(&nested(100)));
    assert!(!reads_as_serde_json(&nested(101)));
}

#[test]
fn reads_the_fixture_review_as_serde_json_does() {
    at_both_widths(|| {
        assert!(reads_as_serde_json(FIXTURE));
        let compact =
            serde_json::to_string(&serde_json::from_str::<Value>(FIXTURE).unwrap()).unwrap();
        assert!(reads_as_serde_json(&compact));
        assert!(delimits(&compact));
        // The review's own decode, which skips most of it, is the
        // reader's, not left to serde_json.
        for text in [FIXTURE, &compact] {
            assert!(from_str::<ReviewBody>(text).is_ok(), "{text}");
            decodes_the_review_as_serde_json_does(text);
        }
    });
}

/// The review's decode, where serde_json accepts the body: the reader
/// gives the same request, or leaves it to serde_json.
fn decodes_the_review_as_serde_json_does(text: &str) {
    let Ok(theirs) = serde_json::from_str::<ReviewBody>(text) else {
        return;
    };
    if let Ok(ours) = from_str::<ReviewBody>(text) {
        let request = |r: ReviewBody| format!("{:?}", r.request.map(Admission::from));
        assert_eq!(request(ours), request(theirs), "on {text:?}");
    }
}

/// Any JSON value, its strings drawn from what moves a bracket scan: quotes,
/// backslashes, brackets, control characters (escaped when serialized),
/// multi-byte characters.
fn any_json() -> impl Strategy<Value = Value> {
    let text = prop::collection::vec(
        prop::sample::select(vec![
            '"', '\\', '[', ']', '{', '}', 'a', ' ', '\n', '\u{1}', 'é', '🙂',
        ]),
        0..40,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>());
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        text.clone().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 200, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map(text.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// What is read after a skipped value.
#[derive(serde::Deserialize, Debug, PartialEq)]
struct AfterSkipped {
    after: String,
}

/// Bytes that change what a JSON scanner does next.
const TRICKY: &[u8] = b"\"\\/{}[],:0123456789-+.eEtrufalsn u\x01\x1f\n\t\xc3\xa9";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A real review with a few bytes changed, inserted or removed: the
    /// reader never reads what serde_json would not, nor differently; it
    /// skips whatever serde_json skips; and the review's decode, which
    /// skips most of the object, reads what serde_json reads wherever
    /// serde_json accepts the body.
    #[test]
    fn an_edited_review_reads_as_serde_json_reads_it(
        edits in prop::collection::vec((0..FIXTURE.len(), 0..3u8, prop::sample::select(TRICKY)), 1..4)
    ) {
        let mut bytes = FIXTURE.as_bytes().to_vec();
        for (at, how, byte) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match how {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => { bytes.remove(at); }
            }
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            reads_as_serde_json(text);
            delimits(text);
            decodes_the_review_as_serde_json_does(text);
        }
    }

    /// Any bytes drawn from what moves a scan: the 64-byte string and
    /// bracket scans end, refuse and carry their state alike at both
    /// widths, from any place.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_widths_scan_alike(
        bytes in prop::collection::vec(prop::sample::select(b"\"\\{}[]x\x01 ".as_slice()), 64..300),
        from in 0..64usize,
    ) {
        let scans = || {
            let string = super::blocks::skip(&bytes, from).map_err(|Unsupported| "refused");
            // As a scan stands inside a value: one bracket open.
            let mut state = super::Brackets {
                depth: 1,
                ..super::Brackets::default()
            };
            let brackets = super::blocks::brackets(&bytes, from, &mut state);
            (string, brackets, state)
        };
        prop_assert_eq!(scans(), narrow(scans));
    }

    /// Any valid JSON value, skipped as an unknown field, ends where
    /// serde_json ends it: the field read after it is read alike, pretty or
    /// compact.
    #[test]
    fn any_skipped_value_ends_where_serde_json_ends_it(value in any_json()) {
        for skipped in [serde_json::to_string(&value).unwrap(), serde_json::to_string_pretty(&value).unwrap()] {
            let text = format!(r#"{{"skipped":{skipped},"after":"read"}}"#);
            let theirs = serde_json::from_str::<AfterSkipped>(&text).unwrap();
            let ours = from_str::<AfterSkipped>(&text);
            prop_assert!(matches!(&ours, Ok(ours) if *ours == theirs), "{text}");
        }
    }
}
