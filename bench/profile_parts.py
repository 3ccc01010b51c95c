#!/usr/bin/env python3
"""Instructions per request by part, from callgrind profiles (bench/profile.sh).

Each function's own instructions (callgrind_annotate's exclusive counts)
go to the first part whose pattern its name matches, so the parts add up
to the whole. Memory copies and the allocator are parts of their own:
whoever called them, they are what a zero-copy, fewer-allocation server
saves.

  profile_parts.py --requests N STS_GUARD.callgrind STATIC.callgrind
"""
import argparse
import re
import subprocess

# (part, patterns): first match wins, in this order.
PARTS = [
    ("allocator", [r"malloc\.c:", r"alloc::raw_vec", r"__rust_alloc", r"__rust_dealloc", r"__rust_realloc",
                   r"alloc::alloc::", r"_int_free", r"_int_malloc", r"cfree", r"tcache"]),
    ("copies (memcpy, memset)", [r"memmove", r"memcpy", r"memset"]),
    ("logging", [r"tracing", r"log_writer", r"log_decision"]),
    ("metrics", [r"prometheus_client", r"webhook::metrics"]),
    ("lookups", [r"sts_guard::lookup"]),
    ("response (encode)", [r"serde_json::ser", r"webhook::decision", r"into_review", r"AdmissionResponse",
                           r"routes::json"]),
    ("review (rules, policy)", [r"sts_guard::review", r"sts_guard::rules", r"sts_guard::policy",
                                r"decide_showing", r"routes::decide"]),
    ("decode", [r"wire::reader", r"serde_json", r"serde_core::de", r"serde::de", r"sts_guard::view", r"webhook::wire",
                r"Deserialize", r"deserialize", r"from_utf8", r"drop_in_place<.*(Admission|StatefulSet|Spec|Container|Probe|view)"]),
    ("TLS", [r"rustls", r"ring::", r"ring_core", r"_aesni", r"gcm", r"aes", r"ghash", r"sha256", r"x25519",
             r"ChaCha", r"poly1305"]),
    ("HTTP", [r"hyper::", r"http::", r"httparse", r"http_body", r"webhook::routes", r"bytes::"]),
    ("runtime (tokio, std, futures)", [r"tokio::", r"futures", r"std::", r"core::", r"parking_lot",
                                       r"mio::", r"pthread", r"syscall", r"epoll", r"sts_guard::webhook"]),
]

LINE = re.compile(r"^\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*)$")


def parts(path):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=no", "--auto=no", path],
                         check=True, capture_output=True, text=True).stdout
    totals = {name: 0 for name, _ in PARTS}
    totals["other"] = 0
    total = 0
    for line in out.splitlines():
        m = LINE.match(line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        n = int(m.group(1).replace(",", ""))
        name = m.group(2)
        total += n
        for part, patterns in PARTS:
            if any(re.search(p, name) for p in patterns):
                totals[part] += n
                break
        else:
            totals["other"] += n
    return total, totals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, required=True)
    ap.add_argument("--body", default="typical-validate")
    ap.add_argument("sts_guard")
    ap.add_argument("static")
    args = ap.parse_args()
    ours_total, ours = parts(args.sts_guard)
    static_total, static = parts(args.static)
    n = args.requests
    size, endpoint = args.body.split("-", 1)
    print(f"Instructions per request (callgrind, {n} /{endpoint} requests of the {size} body, "
          "16 keep-alive TLS connections; start-up and handshakes included)\n")
    print("| part | sts-guard | static responder |")
    print("|---|---:|---:|")
    for part in list(ours):
        a, b = ours[part] / n, static[part] / n
        if a < 50 and b < 50:
            continue
        print(f"| {part} | {a / 1000:,.1f} k | {b / 1000:,.1f} k |")
    print(f"| **all** | **{ours_total / n / 1000:,.1f} k** | **{static_total / n / 1000:,.1f} k** |")
    print(f"\nsts-guard / static responder: {ours_total / static_total:.2f}x")


if __name__ == "__main__":
    main()
