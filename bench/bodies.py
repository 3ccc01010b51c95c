#!/usr/bin/env python3
"""Writes the AdmissionReview bodies the load benchmark and the criterion
benches send, derived from tests/fixtures/admission/create-web.json (a review
as the API server sends it: defaulted object, managedFields included).

  typical-validate.json  the fixture plus a third container (3 containers,
                         1 init container), a few KB
  typical-mutate.json    the same with sts-guard.io/parallel and
                         sts-guard.io/startup-probe set
  large-validate.json    ~300 KB: 12 containers, 10 of them with 66 env vars each, a
                         big last-applied-configuration and managedFields
  large-mutate.json      the same with the mutation annotations

Every object passes validation against tests/fixtures/admission/services.yaml,
so /validate takes its full path (rules + Service lookup) and allows.

usage: bench/bodies.py OUTDIR
"""
import copy
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "tests", "fixtures", "admission", "create-web.json")

MUTATE_ANNOTATIONS = {
    "sts-guard.io/parallel": "true",
    "sts-guard.io/startup-probe": "true",
}


def container(name, image, port, envs=0):
    c = {
        "name": name,
        "image": image,
        "ports": [{"name": name[:15], "containerPort": port, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "livenessProbe": {
            "tcpSocket": {"port": port},
            "timeoutSeconds": 1, "periodSeconds": 10,
            "successThreshold": 1, "failureThreshold": 3,
            # 30 s + 3 x 10 s: the default startup budget (60 s), so the
            # object passes every rule and no answer carries a warning.
            "initialDelaySeconds": 30,
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": port, "scheme": "HTTP"},
            "timeoutSeconds": 1, "periodSeconds": 5,
            "successThreshold": 1, "failureThreshold": 3,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    if envs:
        c["env"] = [
            {"name": f"{name.upper().replace('-', '_')}_SETTING_{i:03d}",
             "value": f"value-{i:03d}-" + "x" * 120}
            for i in range(envs)
        ]
    return c


def managed_fields_for(containers):
    cs = {}
    for c in containers:
        entry = {".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                 "f:livenessProbe": {".": {}, "f:failureThreshold": {}, "f:periodSeconds": {}},
                 "f:readinessProbe": {".": {}, "f:failureThreshold": {}, "f:periodSeconds": {}},
                 "f:ports": {}, "f:resources": {}, "f:terminationMessagePath": {},
                 "f:terminationMessagePolicy": {}}
        if c.get("env"):
            entry["f:env"] = {".": {}, **{f'k:{{"name":"{e["name"]}"}}': {".": {}, "f:name": {}, "f:value": {}} for e in c["env"]}}
        cs[f'k:{{"name":"{c["name"]}"}}'] = entry
    return cs


def review(base, containers, extra_annotations, big=False):
    r = copy.deepcopy(base)
    obj = r["request"]["object"]
    obj["spec"]["template"]["spec"]["containers"] = containers
    ann = obj["metadata"].setdefault("annotations", {})
    ann.update(extra_annotations)
    if big:
        for i in range(40):
            ann[f"example.com/note-{i:02d}"] = "n" * 200
    # kubectl apply stores the whole manifest in last-applied-configuration.
    applied = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "shop",
                     "annotations": {k: v for k, v in ann.items()
                                     if k != "kubectl.kubernetes.io/last-applied-configuration"},
                     "labels": obj["metadata"]["labels"]},
        "spec": {"replicas": 3, "serviceName": "web",
                 "selector": obj["spec"]["selector"],
                 "template": {"metadata": {"labels": obj["spec"]["template"]["metadata"]["labels"]},
                              "spec": {"containers": containers}}},
    }
    ann["kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(applied, separators=(",", ":")) + "\n"
    mf = obj["metadata"]["managedFields"][0]["fieldsV1"]
    mf["f:spec"]["f:template"]["f:spec"]["f:containers"] = managed_fields_for(containers)
    mf["f:metadata"]["f:annotations"].update({f"f:{k}": {} for k in ann})
    return r


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with open(FIXTURE) as f:
        base = json.load(f)
    fixture_containers = base["request"]["object"]["spec"]["template"]["spec"]["containers"]
    typical = fixture_containers + [container("log-shipper", "fluent/fluent-bit:3.1", 2020)]
    large = fixture_containers + [
        container(f"worker-{i}", f"registry.example.com/team/worker:{i}.0", 9000 + i, envs=66)
        for i in range(10)
    ]
    bodies = {
        "typical-validate.json": review(base, typical, {}),
        "typical-mutate.json": review(base, typical, MUTATE_ANNOTATIONS),
        "large-validate.json": review(base, large, {}, big=True),
        "large-mutate.json": review(base, large, MUTATE_ANNOTATIONS, big=True),
    }
    for name, body in bodies.items():
        path = os.path.join(out, name)
        with open(path, "w") as f:
            json.dump(body, f, separators=(",", ":"))
        print(f"{name}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
