#!/usr/bin/env python3
"""Times StatefulSet creates through a real kube-apiserver (bench/e2e-cost.sh).

One keep-alive HTTPS connection with the admin client certificate, as a
controller or kubectl would hold; every create is a POST of a compliant
3-container StatefulSet (probes everywhere, serviceName naming the headless
Service the script created). Prints one JSON line: count, p50, p90, p99,
mean (ms).

usage: e2e_creates.py URL CA CERT KEY NAMESPACE PREFIX COUNT [--warmup N]
       e2e_creates.py --metric URL CA CERT KEY NAME [LABEL=VALUE...]
"""
import http.client
import json
import ssl
import sys
import time
import urllib.parse


def connection(url, ca, cert, key):
    u = urllib.parse.urlparse(url)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=30)


def container(name, port):
    probe = {"tcpSocket": {"port": port}, "periodSeconds": 10}
    return {"name": name, "image": f"registry.example.com/{name}:1.0",
            "ports": [{"containerPort": port}],
            "livenessProbe": probe, "readinessProbe": probe,
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}


def statefulset(name):
    labels = {"app.kubernetes.io/name": "web"}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "serviceName": "web", "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [container("app", 8000),
                                                 container("metrics", 9102),
                                                 container("log-shipper", 2020)]}},
        },
    }


def creates(args):
    url, ca, cert, key, ns, prefix, count = args[:7]
    warmup = int(args[8]) if len(args) > 8 and args[7] == "--warmup" else 20
    conn = connection(url, ca, cert, key)
    path = f"/apis/apps/v1/namespaces/{ns}/statefulsets"
    times = []
    for i in range(warmup + int(count)):
        body = json.dumps(statefulset(f"{prefix}-{i}")).encode()
        t0 = time.perf_counter()
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 201:
            raise SystemExit(f"create {prefix}-{i}: HTTP {resp.status}: {data[:500]!r}")
        if i >= warmup:
            times.append(elapsed * 1e3)
    times.sort()

    def pct(p):
        return times[min(len(times) - 1, int(round(p / 100 * (len(times) - 1))))]

    print(json.dumps({"count": len(times), "p50": pct(50), "p90": pct(90), "p99": pct(99),
                      "mean": sum(times) / len(times), "max": times[-1]}))


def metric(args):
    """Sums the apiserver's counter NAME over the samples matching every
    LABEL=VALUE given (Prometheus text format from /metrics)."""
    url, ca, cert, key, name = args[:5]
    want = [a.split("=", 1) for a in args[5:]]
    conn = connection(url, ca, cert, key)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        labels, value = line[len(name) + 1:].rsplit("} ", 1)
        pairs = dict(p.split("=", 1) for p in labels.split(",") if "=" in p)
        pairs = {k: v.strip('"') for k, v in pairs.items()}
        if all(pairs.get(k) == v for k, v in want):
            total += float(value)
    print(int(total) if total.is_integer() else total)


if __name__ == "__main__":
    if sys.argv[1] == "--metric":
        metric(sys.argv[2:])
    else:
        creates(sys.argv[1:])
