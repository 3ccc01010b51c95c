#!/usr/bin/env bash
# promtool on the alert rules of deploy/prometheus/alerts.yaml:
#   1. `promtool check rules`: they parse, every expression is valid PromQL;
#   2. alerts_test.yaml: for every alert, series that fire it and series that
#      do not (labels only: the rules are given without their annotations);
#   3. annotations_test.yaml: one firing case per alert with its summary,
#      description and runbook_url as rendered ($labels, $value humanized).
# promtool is built once from the Go module proxy (build-promtool.sh) and
# cached in ~/.cache/sts-guard-e2e; the first build takes a few minutes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$here/../.."

promtool="$("$here/build-promtool.sh" | tail -n 1)/promtool"
"$promtool" --version 2>&1 | head -n 1 >&2

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The rule groups are the PrometheusRule's spec, one indentation level in.
awk 'found { sub(/^  /, ""); print } /^spec:$/ { found = 1 }' \
  "$root/deploy/prometheus/alerts.yaml" >"$work/alert-rules.yaml"
grep -q '^groups:' "$work/alert-rules.yaml" \
  || { echo "test-rules: no spec.groups in deploy/prometheus/alerts.yaml" >&2; exit 1; }
"$promtool" check rules "$work/alert-rules.yaml"

# The same rules without their annotations, for the label-only cases.
mkdir "$work/labels"
awk '
  skip && /^[[:space:]]*$/ { next }
  skip && match($0, /[^ ]/) > indent { next }
  { skip = 0 }
  /^[[:space:]]*annotations:[[:space:]]*$/ { skip = 1; indent = match($0, /[^ ]/); next }
  { print }
' "$work/alert-rules.yaml" >"$work/labels/alert-rules.yaml"
if grep -q 'annotations:\|summary:\|description:' "$work/labels/alert-rules.yaml"; then
  echo "test-rules: annotations left in the label-only rules" >&2
  exit 1
fi

cp "$here/alerts_test.yaml" "$work/labels/"
cp "$here/annotations_test.yaml" "$work/"
"$promtool" test rules "$work/labels/alerts_test.yaml" "$work/annotations_test.yaml"
