#!/usr/bin/env python3
"""The cluster side of bench/scale.sh: fills a kube-apiserver with Services
and StatefulSets, writes AdmissionReviews that name them, drives /validate
with them, and reads counters from Prometheus text.

Objects are numbered so that runs can grow a cluster step by step (1,000
Services, then 9,000 more for 10,000, ...) and always agree on names:

  Service i       namespace scale-NN (NN = i mod NAMESPACES), name svc-iiiii;
                  headless (clusterIP: None) when i mod 3 == 0, else a normal
                  ClusterIP Service; labels as Helm writes them; every other
                  one carries a kubectl.kubernetes.io/last-applied-configuration
                  annotation (the whole manifest again, as `kubectl apply` does)
  StatefulSet j   db-jjjjj, compliant (liveness, readiness and startup
                  probes on every container, ports declared), naming headless
                  Service 3j (spec.serviceName) in its namespace and selecting
                  that Service's labels, with a PodDisruptionBudget db-jjjjj
                  selecting its pods

usage:
  scale_cluster.py populate URL CA CERT KEY --services N [--statefulsets M]
                   [--namespaces 50] [--workers 8]
      creates Services 0..N-1 and StatefulSets 0..M-1 that do not exist yet
      (409 counts as done), in parallel over keep-alive connections; prints
      one JSON line (created, seconds, objects/s)
  scale_cluster.py bodies OUTDIR --statefulsets M [--count 2000] [--namespaces 50]
      OUTDIR/one.json: an AdmissionReview (the typical body of benches/support/bodies.rs,
      startup probes added) of a compliant StatefulSet in the place of
      StatefulSet 0 (its headless Service and PodDisruptionBudget exist);
      OUTDIR/many.jsonl: COUNT of them, one per line, in the places of COUNT
      different StatefulSets (cycling when there are fewer)
  scale_cluster.py wait-ready PORT CA START_EPOCH_SECONDS [--timeout 300] [--pid PID]
      polls https://localhost:PORT/readyz every 5 ms; prints the seconds from
      START to the first 200
  scale_cluster.py load PORT CA BODIES.jsonl
      POSTs every body to /validate over one keep-alive connection; fails
      unless each is allowed; prints one JSON line (count, p50, p99, mean ms,
      and how many answers carried warnings, with the first one)
  scale_cluster.py metric URL NAME [LABEL=VALUE...]
      sums the samples of NAME at the plain-HTTP /metrics URL
"""
import concurrent.futures
import copy
import http.client
import json
import os
import random
import socket
import ssl
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def ns_of(i, namespaces):
    return f"scale-{i % namespaces:02d}"


def svc_name(i):
    return f"svc-{i:05d}"


def headless(i):
    return i % 3 == 0


def selector(i):
    return {"app.kubernetes.io/name": svc_name(i), "app.kubernetes.io/instance": f"{svc_name(i)}-prod"}


def service(i, namespaces):
    name, ns = svc_name(i), ns_of(i, namespaces)
    labels = {
        **selector(i),
        "app.kubernetes.io/version": f"1.{i % 17}.{i % 5}",
        "app.kubernetes.io/component": ["api", "db", "cache", "worker"][i % 4],
        "app.kubernetes.io/part-of": f"team-{i % 23:02d}",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": f"{name}-{i % 7}.{i % 11}.0",
    }
    spec = {
        "selector": selector(i),
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                  {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}],
    }
    if headless(i):
        spec["clusterIP"] = "None"
        spec["publishNotReadyAddresses"] = True
    annotations = {"meta.helm.sh/release-name": f"{name}-prod", "meta.helm.sh/release-namespace": ns}
    obj = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
           "spec": spec}
    if i % 2 == 0:
        applied = copy.deepcopy(obj)
        annotations["kubectl.kubernetes.io/last-applied-configuration"] = (
            json.dumps(applied, separators=(",", ":")) + "\n")
    return obj


def probe(port, path=None, failures=3):
    p = {"periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": failures}
    p.update({"httpGet": {"path": path, "port": port}} if path else {"tcpSocket": {"port": port}})
    return p


def startup_probe(liveness):
    """The liveness check, allowed 5 minutes before the first restart."""
    return {**liveness, "failureThreshold": 30}


def budget(j, namespaces):
    """The PodDisruptionBudget of StatefulSet j."""
    h = 3 * j
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": f"db-{j:05d}", "namespace": ns_of(h, namespaces)},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(h)}}}


def statefulset(j, namespaces):
    """StatefulSet j names headless Service 3j (so there are at most as
    many StatefulSets as headless Services)."""
    h = 3 * j
    labels = {**selector(h), "app.kubernetes.io/component": "db"}
    containers = [
        {"name": "app", "image": f"registry.example.com/team/app:{j % 9}.0",
         "ports": [{"name": "http", "containerPort": 8080}],
         "livenessProbe": probe(8080), "readinessProbe": probe(8080, "/ready"),
         "startupProbe": startup_probe(probe(8080)),
         "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
        {"name": "metrics", "image": "registry.example.com/exporter:0.15",
         "ports": [{"name": "metrics", "containerPort": 9090}],
         "livenessProbe": probe(9090), "readinessProbe": probe(9090, "/metrics"),
         "startupProbe": startup_probe(probe(9090))},
    ]
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": f"db-{j:05d}", "namespace": ns_of(h, namespaces), "labels": labels},
        "spec": {
            "serviceName": svc_name(h), "replicas": 3,
            "selector": {"matchLabels": selector(h)},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}},
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "10Gi"}}}}],
        },
    }


# ---- API access ---------------------------------------------------------------

def connection(url, ca, cert, key, timeout=60):
    u = urllib.parse.urlparse(url)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=timeout)


class Poster:
    """One keep-alive connection per worker thread."""

    def __init__(self, url, ca, cert, key):
        self.args, self.local = (url, ca, cert, key), threading.local()

    def post(self, path, obj):
        body = json.dumps(obj, separators=(",", ":")).encode()
        for attempt in range(8):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = connection(*self.args)
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                time.sleep(0.2 * (attempt + 1))
                continue
            if resp.status in (201, 409):
                return resp.status
            if resp.status in (429, 500, 503, 504):
                time.sleep(0.2 * (attempt + 1))
                continue
            raise SystemExit(f"POST {path}: HTTP {resp.status}: {data[:400]!r}")
        raise SystemExit(f"POST {path}: gave up after retries")


def populate(argv):
    url, ca, cert, key = argv[:4]
    opts = flags(argv[4:], services=None, statefulsets="0", namespaces="50", workers="8")
    n_svc, n_sts = int(opts["services"]), int(opts["statefulsets"])
    if n_sts > (n_svc + 2) // 3:
        raise SystemExit(f"{n_sts} StatefulSets need as many headless Services; {n_svc} Services have {(n_svc + 2) // 3}")
    namespaces, workers = int(opts["namespaces"]), int(opts["workers"])
    poster = Poster(url, ca, cert, key)
    t0 = time.monotonic()
    for n in range(namespaces):
        poster.post("/api/v1/namespaces",
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns_of(n, namespaces)}})
    # What a previous, smaller step (or an interrupted run) stored already.
    have_svc = existing(url, ca, cert, key, "/api/v1/services")
    have_sts = existing(url, ca, cert, key, "/apis/apps/v1/statefulsets")
    have_pdb = existing(url, ca, cert, key, "/apis/policy/v1/poddisruptionbudgets")
    jobs = []
    for i in range(n_svc):
        if (ns_of(i, namespaces), svc_name(i)) not in have_svc:
            jobs.append((f"/api/v1/namespaces/{ns_of(i, namespaces)}/services", service(i, namespaces)))
    for j in range(n_sts):
        obj = statefulset(j, namespaces)
        if (obj["metadata"]["namespace"], obj["metadata"]["name"]) not in have_sts:
            jobs.append((f"/apis/apps/v1/namespaces/{obj['metadata']['namespace']}/statefulsets", obj))
        pdb = budget(j, namespaces)
        if (pdb["metadata"]["namespace"], pdb["metadata"]["name"]) not in have_pdb:
            jobs.append((f"/apis/policy/v1/namespaces/{pdb['metadata']['namespace']}/poddisruptionbudgets", pdb))
    created = 0
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        # In chunks, so the first error stops the run early.
        for start in range(0, len(jobs), 2000):
            for status in pool.map(lambda job: poster.post(*job), jobs[start:start + 2000]):
                created += status == 201
    elapsed = time.monotonic() - t0
    print(json.dumps({"created": created, "seconds": round(elapsed, 1),
                      "per_second": round(created / elapsed, 1) if elapsed else 0}))


def existing(url, ca, cert, key, path):
    """(namespace, name) of the objects stored (all namespaces, metadata only)."""
    conn = connection(url, ca, cert, key)
    names, cont = set(), ""
    while True:
        q = "?limit=5000" + (f"&continue={urllib.parse.quote(cont)}" if cont else "")
        conn.request("GET", path + q, headers={
            "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        if resp.status != 200:
            raise SystemExit(f"GET {path}: HTTP {resp.status}: {data}")
        names.update((o["metadata"]["namespace"], o["metadata"]["name"]) for o in data.get("items") or [])
        cont = data["metadata"].get("continue", "")
        if not cont:
            return names


# ---- AdmissionReviews ----------------------------------------------------------

def typical_review():
    # The typical body of benches/support/bodies.rs, which bench/scale.sh
    # writes (example bench-bodies) into the folder STS_GUARD_BENCH_BODIES.
    with open(os.path.join(os.environ["STS_GUARD_BENCH_BODIES"], "typical-validate.json")) as f:
        return json.load(f)


def review_naming(base, h, namespaces, uid):
    r = copy.deepcopy(base)
    req, obj = r["request"], r["request"]["object"]
    ns, name = ns_of(h, namespaces), f"web-{h:05d}"
    req["uid"] = f"00000000-0000-4000-8000-{uid:012d}"
    req["namespace"], req["name"] = ns, name
    obj["metadata"]["namespace"], obj["metadata"]["name"] = ns, name
    labels = {**selector(h), "app.kubernetes.io/component": "web"}
    obj["metadata"]["labels"] = labels
    obj["spec"]["serviceName"] = svc_name(h)
    obj["spec"]["selector"] = {"matchLabels": selector(h)}
    obj["spec"]["template"]["metadata"]["labels"] = labels
    for c in obj["spec"]["template"]["spec"]["containers"]:
        if "livenessProbe" in c and "startupProbe" not in c:
            c["startupProbe"] = startup_probe(c["livenessProbe"])
    return r


def write_bodies(argv):
    out = argv[0]
    opts = flags(argv[1:], statefulsets=None, count="2000", namespaces="50")
    n_sts, count, namespaces = int(opts["statefulsets"]), int(opts["count"]), int(opts["namespaces"])
    os.makedirs(out, exist_ok=True)
    base = typical_review()
    with open(os.path.join(out, "one.json"), "w") as f:
        json.dump(review_naming(base, 0, namespaces, 0), f, separators=(",", ":"))
    headless_ids = [3 * j for j in range(n_sts)]
    random.Random(12).shuffle(headless_ids)
    picks = [headless_ids[k % len(headless_ids)] for k in range(count)]
    with open(os.path.join(out, "many.jsonl"), "w") as f:
        for k, h in enumerate(picks):
            f.write(json.dumps(review_naming(base, h, namespaces, k + 1), separators=(",", ":")) + "\n")


# ---- the webhook ---------------------------------------------------------------

def tls_context(ca):
    return ssl.create_default_context(cafile=ca)


def wait_ready(argv):
    port, ca, start = int(argv[0]), argv[1], float(argv[2])
    opts = flags(argv[3:], timeout="300", pid="")
    ctx, deadline = tls_context(ca), time.time() + float(opts["timeout"])
    pid = opts["pid"]
    while time.time() < deadline:
        if pid and not os.path.exists(f"/proc/{pid}"):
            raise SystemExit(f"process {pid} exited before it was ready")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    head = s.recv(64)
            if head.startswith(b"HTTP/1.1 200"):
                print(f"{time.time() - start:.3f}")
                return
        except (OSError, ssl.SSLError):
            pass
        time.sleep(0.005)
    raise SystemExit("not ready before the deadline")


def load(argv):
    port, ca, path = int(argv[0]), argv[1], argv[2]
    with open(path, "rb") as f:
        bodies = [line.rstrip(b"\n") for line in f if line.strip()]
    conn = http.client.HTTPSConnection("localhost", port, context=tls_context(ca), timeout=30)
    times, warned, first_warning = [], 0, None
    for k, body in enumerate(bodies):
        t0 = time.perf_counter()
        conn.request("POST", "/validate", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - t0
        answer = json.loads(data) if resp.status == 200 else {}
        if not answer.get("response", {}).get("allowed"):
            raise SystemExit(f"review {k}: HTTP {resp.status}: {data[:400]!r}")
        warnings = answer["response"].get("warnings") or []
        if warnings:
            warned += 1
            first_warning = first_warning or warnings[0]
        times.append(elapsed * 1e3)
    times.sort()

    def pct(p):
        return times[min(len(times) - 1, int(round(p / 100 * (len(times) - 1))))]

    print(json.dumps({"count": len(times), "p50": round(pct(50), 3), "p99": round(pct(99), 3),
                      "mean": round(sum(times) / len(times), 3), "warned": warned,
                      "first_warning": first_warning}))


def metric(argv):
    url, name = argv[0], argv[1]
    want = [a.split("=", 1) for a in argv[2:]]
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("GET", u.path or "/metrics")
    text = conn.getresponse().read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric_name = series.split("{", 1)[0]
        if metric_name not in (name, name + "_total"):
            continue
        if all(f'{k}="{v}"' in series for k, v in want):
            total += float(value)
    print(int(total) if total.is_integer() else total)


# ---- helpers -------------------------------------------------------------------

def flags(argv, **defaults):
    opts = dict(defaults)
    it = iter(argv)
    for a in it:
        if not a.startswith("--"):
            raise SystemExit(f"unexpected argument {a!r}")
        key = a[2:].replace("-", "_")
        if key not in opts:
            raise SystemExit(f"unknown option {a}")
        opts[key] = next(it)
    missing = [k for k, v in opts.items() if v is None]
    if missing:
        raise SystemExit(f"missing --{missing[0]}")
    return opts


def main():
    commands = {"populate": populate, "bodies": write_bodies, "wait-ready": wait_ready,
                "load": load, "metric": metric}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        raise SystemExit(__doc__)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
