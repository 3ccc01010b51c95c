//! How manifests are read: one case per way real inputs differ from
//! textbook YAML, each built here.

use super::files::{files_under, text_of};
use super::*;

fn read(text: &str) -> FileRead {
    read_text(text, "app.yaml", "default")
}

fn statefulsets(read: &FileRead) -> Vec<&InputStatefulSet> {
    read.objects
        .iter()
        .filter_map(|o| match o {
            InputObject::StatefulSet(s) => Some(&**s),
            _ => None,
        })
        .collect()
}

fn invalid(read: &FileRead) -> Vec<&InvalidObject> {
    read.objects
        .iter()
        .filter_map(|o| match o {
            InputObject::Invalid(i) => Some(i),
            _ => None,
        })
        .collect()
}

const STS: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: app
          image: nginx
";

#[test]
fn syntax_errors_name_file_line_and_column() {
    let err = read("kind: Service\n---\nkind: x\n  bad: indent\n")
        .error
        .unwrap();
    let text = err.to_string();
    assert!(text.starts_with("app.yaml:4:"), "{text}");
    assert!(!text.contains("at line"), "{text}");
}

#[test]
fn lists_and_documents_keep_their_place() {
    let text = "---\n# Source: chart/templates/sts.yaml\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n- apiVersion: apps/v1\n  kind: StatefulSet\n  metadata: {name: web}\n  spec: 5\n";
    let read = read(text);
    let bad = invalid(&read)[0];
    assert_eq!(bad.name, "web");
    // The item's own line, not the List's.
    assert_eq!(bad.source.to_string(), "app.yaml:9:3 (document 1, item 2)");
    assert!(bad.message.contains("spec"), "{}", bad.message);
}

#[test]
fn folders_skip_other_files_and_symlinked_folders() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("b");
    std::fs::create_dir(&sub).unwrap();
    for name in ["a.yaml", "b/c.yml", "b/d.json", "b/notes.md"] {
        std::fs::write(dir.path().join(name), "{}").unwrap();
    }
    // A link back up would make the walk endless if followed.
    std::os::unix::fs::symlink(dir.path(), sub.join("up")).unwrap();
    let found: Vec<String> = files_under(dir.path())
        .unwrap()
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
        .collect();
    assert_eq!(found, vec!["a.yaml", "b/c.yml", "b/d.json"]);
}

#[test]
fn old_apps_versions_are_reported_and_other_groups_ignored() {
    let text = "apiVersion: apps/v1beta2\nkind: StatefulSet\nmetadata: {name: old}\n---\napiVersion: apps.kruise.io/v1beta1\nkind: StatefulSet\nmetadata: {name: kruise}\n";
    let read = read(text);
    assert_eq!(invalid(&read).len(), 1);
    assert!(invalid(&read)[0].message.contains("apps/v1beta2"));
    assert!(statefulsets(&read).is_empty());
}

#[test]
fn yaml_1_1_octal_file_modes_read_as_kubectl_reads_them() {
    let text = STS.replace(
        "          image: nginx\n",
        "          image: nginx\n      volumes:\n        - name: s\n          configMap: {name: s, defaultMode: 0755}\n",
    );
    let read = read(&text);
    let sts = statefulsets(&read);
    assert_eq!(sts.len(), 1, "{:?}", invalid(&read));
    // As the API server would store it (the review does not read volumes).
    let json = sts[0].node.to_json();
    let mode = json["spec"]["template"]["spec"]["volumes"][0]["configMap"]["defaultMode"].as_i64();
    assert_eq!(mode, Some(0o755));
}

#[test]
fn a_repeated_key_keeps_its_last_value() {
    let text = STS.replace(
        "  serviceName: web\n",
        "  serviceName: first\n  serviceName: web\n",
    );
    let read = read(&text);
    assert!(read.error.is_none(), "{:?}", read.error);
    let sts = statefulsets(&read);
    assert_eq!(
        sts[0].sts.spec.as_ref().unwrap().service_name.as_deref(),
        Some("web")
    );
}

#[test]
fn concatenated_json_objects_are_each_read_at_their_line() {
    let one = r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"a"},"spec":{"serviceName":"a","selector":{},"template":{"spec":{"containers":[{"name":"app"}]}}}}"#;
    let text = format!(
        "{one}{}\n{}\n",
        one.replace("\"a\"", "\"b\""),
        one.replace("\"a\"", "\"c\"")
    );
    let read = read(&text);
    assert!(read.error.is_none(), "{:?}", read.error);
    let names: Vec<_> = statefulsets(&read)
        .iter()
        .map(|s| {
            (
                s.sts.metadata.name.as_deref().unwrap().to_string(),
                s.source.line,
                s.source.column,
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("a".to_string(), 1, 1),
            ("b".to_string(), 1, one.len() as u64 + 1),
            ("c".to_string(), 2, 1)
        ]
    );
}

#[test]
fn a_broken_json_stream_names_line_and_column() {
    let err = read("{\"kind\": \"Service\"}\n{\"kind\": }\n")
        .error
        .unwrap();
    assert!(err.to_string().starts_with("app.yaml:2:"), "{err}");
}

#[test]
fn a_byte_order_mark_after_a_document_marker_is_dropped() {
    let text = format!("apiVersion: v1\nkind: ConfigMap\n---\n\u{feff}{STS}");
    let read = read(&text);
    assert!(read.error.is_none(), "{:?}", read.error);
    assert_eq!(statefulsets(&read).len(), 1);
}

#[test]
fn bytes_that_are_not_utf8_in_a_comment_change_nothing() {
    let mut bytes = b"# caf\xe9 latin-1\n".to_vec();
    bytes.extend_from_slice(STS.as_bytes());
    let read = read(&text_of(&bytes));
    assert!(read.error.is_none(), "{:?}", read.error);
    assert_eq!(statefulsets(&read).len(), 1);
    assert_eq!(statefulsets(&read)[0].source.line, 2);
}

#[test]
fn decode_errors_name_the_field_path_and_its_line() {
    let text = STS.replace(
        "          image: nginx\n",
        "          image: nginx\n          ports:\n            - containerPort: \"80\"\n",
    );
    let read = read(&text);
    let bad = invalid(&read);
    assert_eq!(bad.len(), 1);
    assert_eq!(
        bad[0].message,
        "spec.template.spec.containers[0].ports[0].containerPort: expected an integer, found the string \"80\""
    );
    assert_eq!(
        bad[0].at,
        Position {
            line: 15,
            column: 30
        }
    );
}

#[test]
fn missing_required_fields_point_at_their_parent() {
    let text = STS.replace(
        "        - name: app\n          image: nginx\n",
        "        - image: nginx\n",
    );
    let read = read(&text);
    let bad = invalid(&read);
    assert_eq!(
        bad[0].message,
        "has a container without a name; the API server requires it"
    );
    assert_eq!(bad[0].at.line, 12);
}

#[test]
fn an_alias_bomb_is_refused_in_words() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let prev = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let err = read(&text).error.expect("refused").to_string();
    assert!(err.starts_with("app.yaml:"), "{err}");
    assert!(
        !err.contains('{') && !err.contains("Error"),
        "a Rust debug struct: {err}"
    );
}

#[test]
fn non_string_keys_become_their_text() {
    let read = read(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selector: {80: http, true: x}}\n",
    );
    let InputObject::LookedUp(s) = &read.objects[0] else {
        panic!("{:?}", read.objects)
    };
    let crate::lookup::Object::Services(s) = &s.object else {
        panic!("{s:?}")
    };
    let labels = s.selector.as_ref().unwrap();
    assert_eq!(labels.get("80"), Some("http"));
    assert_eq!(labels.get("true"), Some("x"));
}

#[test]
fn comment_only_documents_are_not_counted() {
    let read = read("---\n# nothing\n---\n# Source: x\n---\n");
    assert_eq!(read.documents, 0);
    assert!(read.objects.is_empty() && read.error.is_none());
}
