//! `sts-guard check` over 10,000 StatefulSet documents (10 files of 1,000,
//! ~60 lines each, a headless Service before every tenth): the release
//! binary end to end (read, review, write the JSON report), and the same
//! work in-process without the report, to tell parsing from the rest.
//! Target: under 2 s for the binary.
//!
//! cargo bench --bench check
//!
//! The manifests are generated into a temporary folder at bench time.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use sts_guard::commands::check::{CheckOptions, check};

const FILES: usize = 10;
const PER_FILE: usize = 1_000;
const STATEFULSETS: usize = FILES * PER_FILE;

/// One realistic StatefulSet: labels, annotations, an init container, env,
/// resources, probes, mounts and a volume claim template. Every third one
/// lacks a readiness probe; every other one asks for a startup probe.
fn statefulset(out: &mut String, i: usize) {
    let svc = i / 10;
    let ns = svc % 20;
    let startup = if i % 2 == 1 { "true" } else { "false" };
    let readiness = if i.is_multiple_of(3) {
        "          # no readinessProbe\n".to_string()
    } else {
        "          readinessProbe:\n            httpGet: {path: /ready, port: http}\n".to_string()
    };
    let _ = write!(
        out,
        "---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: app-{i}
  namespace: team-{ns}
  labels:
    app.kubernetes.io/name: app-{i}
    app.kubernetes.io/part-of: bench
  annotations:
    sts-guard.io/startup-probe: \"{startup}\"
spec:
  serviceName: svc-{svc}
  replicas: 3
  podManagementPolicy: OrderedReady
  selector:
    matchLabels:
      app.kubernetes.io/name: app-{i}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: app-{i}
        group: g-{svc}
    spec:
      terminationGracePeriodSeconds: 30
      initContainers:
        - name: init-perms
          image: busybox:1.36
          command: [\"sh\", \"-c\", \"chown -R 1000:1000 /data\"]
      containers:
        - name: app
          image: registry.example.com/app:1.2.{i}
          ports:
            - name: http
              containerPort: 8080
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
          resources:
            requests: {{cpu: 100m, memory: 128Mi}}
            limits: {{memory: 256Mi}}
          livenessProbe:
            httpGet: {{path: /healthz, port: http}}
            periodSeconds: 10
{readiness}          volumeMounts:
            - name: data
              mountPath: /data
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        resources:
          requests:
            storage: 1Gi
"
    );
}

fn service(out: &mut String, svc: usize) {
    let ns = svc % 20;
    let _ = write!(
        out,
        "---
apiVersion: v1
kind: Service
metadata:
  name: svc-{svc}
  namespace: team-{ns}
spec:
  clusterIP: None
  selector:
    group: g-{svc}
  ports:
    - name: http
      port: 8080
"
    );
}

fn generate(dir: &Path) {
    for f in 0..FILES {
        let mut text = String::with_capacity(PER_FILE * 1_600);
        for j in 0..PER_FILE {
            let i = f * PER_FILE + j;
            if i.is_multiple_of(10) {
                service(&mut text, i / 10);
            }
            statefulset(&mut text, i);
        }
        std::fs::write(dir.join(format!("apps-{f:02}.yaml")), text).expect("writing manifests");
    }
}

fn run_binary(dir: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .args(["check", "-o", "json", "-f"])
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("running sts-guard check");
    // Every third StatefulSet lacks a readiness probe: exit 1.
    assert_eq!(status.code(), Some(1));
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    generate(dir.path());
    let options = CheckOptions {
        paths: vec![dir.path().to_path_buf()],
        namespace: "default".into(),
        policy: None,
        platform_namespace: "sts-guard".into(),
    };
    let report = check(&options).expect("check");
    assert_eq!(report.objects.len(), STATEFULSETS);
    assert_eq!(report.summary().denied, STATEFULSETS.div_ceil(3));

    let mut group = c.benchmark_group("check");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(STATEFULSETS as u64));
    group.bench_function("binary_10k_statefulsets_json", |b| {
        b.iter(|| run_binary(dir.path()))
    });
    group.bench_function("in_process_10k_statefulsets", |b| {
        b.iter(|| black_box(check(&options).expect("check")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
