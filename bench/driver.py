#!/usr/bin/env python3
"""Load benchmark driver; bench/run.sh builds, installs oha and calls this.

For each server (the static TLS responder, the ceiling; then sts-guard
serve --services-from) it measures, over TLS with HTTP/1.1 keep-alive:

  - saturation: oha -c CONNS for DURATION: throughput, p50/p99/p99.9;
  - fixed rate: oha -q RATE --latency-correction: p50/p99/p99.9 (RATE for
    the typical body, LARGE_RATE for the large one);
  - CPU of the server over each run (utime+stime from /proc/PID/stat),
    per request and in cores; CPU of oha (from wait4's rusage);
  - RSS: idle after start, highest VmRSS seen during each run, VmHWM;
  - startup to ready (sts-guard): from spawn to the first 200 on /readyz.

Results: OUT/results.json and a Markdown report on stdout (and OUT/report.md).

Python, not Rust: it only starts processes, samples /proc and formats a
report (no Kubernetes, no TLS of its own), which the standard library does
as well, and BENCHMARKS.md's Load figures were taken with it.
"""
import argparse
import datetime
import json
import os
import platform
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_cpu_seconds(pid):
    """(user, kernel) CPU seconds of the process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def threads(pid):
    return proc_status_kib(pid, "Threads")


class RssSampler(threading.Thread):
    """Highest VmRSS of a process while running, sampled every 20 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, proc_status_kib(self.pid, "VmRSS"))
            except OSError:
                return
            self.stop.wait(0.02)


def https_get(port, path, ca, timeout=1.0):
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    return int(data.split(b" ", 2)[1])


def https_post(port, path, ca, body):
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            head = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            s.sendall(head + body)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", payload
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        payload = out
    return status, payload


def start(cmd, port, ca, log):
    """Spawns a server; returns (Popen, seconds from spawn to ready)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=log, stderr=log)
    deadline = t0 + 30
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"{cmd[0]} exited with {p.returncode}; see {log.name}")
        try:
            if https_get(port, "/readyz", ca, timeout=0.2) == 200:
                return p, time.monotonic() - t0
        except (OSError, ssl.SSLError, ValueError, IndexError):
            pass
        time.sleep(0.001)
    raise SystemExit(f"{cmd[0]} not ready within 30 s")


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def oha(args, port, path, body_file, rate=None):
    cmd = [args.oha, "--no-tui", "--output-format", "json", "-z", args.duration,
           "-m", "POST", "-T", "application/json", "-D", body_file,
           "--cacert", args.ca, f"https://localhost:{port}{path}"]
    if rate:
        cmd[1:1] = ["-q", str(rate), "--latency-correction", "-c", str(args.rate_conns)]
    else:
        cmd[1:1] = ["-c", str(args.conns)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_chunks = []
    reader = threading.Thread(target=lambda: out_chunks.append(p.stdout.read()), daemon=True)
    reader.start()
    _, status, rusage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    err = p.stderr.read().decode(errors="replace")
    if p.returncode != 0:
        raise SystemExit(f"oha failed ({p.returncode}): {err}")
    result = json.loads(out_chunks[0])
    result["_oha_cpu"] = rusage.ru_utime + rusage.ru_stime
    return result


def measure(args, server, name, port, path, body_file, rate=None):
    pid = server.pid
    sampler = RssSampler(pid)
    sampler.start()
    (user0, sys0), t0 = proc_cpu_seconds(pid), time.monotonic()
    r = oha(args, port, path, body_file, rate)
    (user1, sys1), t1 = proc_cpu_seconds(pid), time.monotonic()
    cpu0, cpu1 = user0 + sys0, user1 + sys1
    sampler.stop.set()
    sampler.join()
    codes = r.get("statusCodeDistribution", {})
    bad = {k: v for k, v in codes.items() if k != "200"}
    errors = {k: v for k, v in (r.get("errorDistribution") or {}).items()
              if "aborted due to deadline" not in k}
    if bad or errors:
        raise SystemExit(f"{name}: non-200 answers {bad} or errors {errors}")
    s, lat = r["summary"], r["latencyPercentiles"]
    requests = sum(codes.values())
    wall = t1 - t0
    row = {
        "name": name, "mode": f"{rate}/s" if rate else f"saturation c={args.conns}",
        "rps": requests / s["total"], "requests": requests,
        "p50_ms": lat["p50"] * 1e3, "p99_ms": lat["p99"] * 1e3, "p999_ms": lat["p99.9"] * 1e3,
        "server_cpu_cores": (cpu1 - cpu0) / wall,
        "server_cpu_us_per_req": (cpu1 - cpu0) / max(requests, 1) * 1e6,
        "server_kernel_us_per_req": (sys1 - sys0) / max(requests, 1) * 1e6,
        "oha_cpu_cores": r["_oha_cpu"] / wall,
        "peak_rss_mib": sampler.peak / 1024,
    }
    print(f"  {name:28} {row['mode']:16} {row['rps']:9.0f} req/s  p50 {row['p50_ms']:.3f} ms"
          f"  p99 {row['p99_ms']:.3f} ms  p99.9 {row['p999_ms']:.3f} ms"
          f"  cpu {row['server_cpu_cores']:.2f} cores ({row['server_cpu_us_per_req']:.1f} µs/req,"
          f" {row['server_kernel_us_per_req']:.1f} in the kernel)"
          f"  oha {row['oha_cpu_cores']:.2f}  rss {row['peak_rss_mib']:.1f} MiB", file=sys.stderr)
    return row


def warm_up(args, port, path, body_file):
    subprocess.run([args.oha, "--no-tui", "--output-format", "quiet", "-z", "1s", "-c", str(args.conns),
                    "-m", "POST", "-T", "application/json", "-D", body_file, "--cacert", args.ca,
                    f"https://localhost:{port}{path}"], check=True, stdout=subprocess.DEVNULL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "loadavg_before": load}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sts-guard", required=True)
    ap.add_argument("--static-responder", required=True)
    ap.add_argument("--oha", required=True)
    ap.add_argument("--certs", required=True)
    ap.add_argument("--bodies", required=True)
    ap.add_argument("--services", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--large-rate", type=int, default=200)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--rate-conns", type=int, default=8)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    args.ca = os.path.join(args.certs, "ca.crt")
    crt, key = os.path.join(args.certs, "tls.crt"), os.path.join(args.certs, "tls.key")
    body = {n: os.path.join(args.bodies, f"{n}.json")
            for n in ["typical-validate", "typical-mutate", "large-validate", "large-mutate"]}
    rate = {"typical": args.rate, "large": args.large_rate}
    info = machine()
    print(f"# {info['date']}  {info['nproc']} × {info['cpu']}  kernel {info['kernel']}"
          f"  load {info['loadavg_before']}", file=sys.stderr)
    rows, facts = [], {}

    # ---- sts-guard -------------------------------------------------------
    port = free_port()
    with open(os.path.join(args.out, "sts-guard.log"), "w") as log:
        cmd = [args.sts_guard, "serve", "--cert", crt, "--key", key,
               "--listen", f"127.0.0.1:{port}", "--metrics-listen", "off",
               "--services-from", args.services, "--shutdown-delay", "0s"]
        # Startup: the best of 5 (the first pays for cold page cache).
        startups = []
        for _ in range(5):
            p, ready = start(cmd, port, args.ca, log)
            startups.append(ready)
            stop(p)
        server, ready = start(cmd, port, args.ca, log)
        startups.append(ready)
        facts["startup_to_ready_ms"] = min(startups) * 1e3
        facts["startup_to_ready_ms_max"] = max(startups) * 1e3
        time.sleep(0.5)
        facts["idle_rss_mib"] = proc_status_kib(server.pid, "VmRSS") / 1024
        facts["threads"] = threads(server.pid)
        # What sts-guard answers: the static responder sends the same bytes.
        answers = {}
        for n in ["typical-validate", "large-validate"]:
            with open(body[n], "rb") as f:
                status, payload = https_post(port, "/validate", args.ca, f.read())
            assert status == 200 and b'"allowed":true' in payload, payload
            answers[n] = os.path.join(args.out, f"answer-{n}.json")
            with open(answers[n], "wb") as f:
                f.write(payload)
        warm_up(args, port, "/validate", body["typical-validate"])
        for size in ["typical", "large"]:
            for endpoint in ["validate", "mutate"]:
                n = f"{size}-{endpoint}"
                rows.append(measure(args, server, f"sts-guard /{endpoint} {size}", port,
                                    f"/{endpoint}", body[n]))
                rows.append(measure(args, server, f"sts-guard /{endpoint} {size}", port,
                                    f"/{endpoint}", body[n], rate=rate[size]))
        time.sleep(1)
        facts["idle_rss_after_load_mib"] = proc_status_kib(server.pid, "VmRSS") / 1024
        facts["peak_rss_hwm_mib"] = proc_status_kib(server.pid, "VmHWM") / 1024
        stop(server)

    # ---- static responder (the ceiling) --------------------------------
    for size in ["typical", "large"]:
        port = free_port()
        with open(os.path.join(args.out, "static-responder.log"), "a") as log:
            cmd = [args.static_responder, "--cert", crt, "--key", key,
                   "--listen", f"127.0.0.1:{port}", "--body", answers[f"{size}-validate"]]
            server, _ = start(cmd, port, args.ca, log)
            warm_up(args, port, "/validate", body[f"{size}-validate"])
            rows.append(measure(args, server, f"static responder {size}", port, "/validate",
                                body[f"{size}-validate"]))
            rows.append(measure(args, server, f"static responder {size}", port, "/validate",
                                body[f"{size}-validate"], rate=rate[size]))
            facts[f"static_{size}_peak_rss_mib"] = proc_status_kib(server.pid, "VmHWM") / 1024
            stop(server)

    def sat(name):
        return next(r for r in rows if r["name"] == name and r["mode"].startswith("saturation"))

    for size in ["typical", "large"]:
        facts[f"validate_{size}_vs_static"] = (sat(f"sts-guard /validate {size}")["rps"]
                                               / sat(f"static responder {size}")["rps"])
    with open("/proc/loadavg") as f:
        info["loadavg_after"] = " ".join(f.read().split()[:3])
    sizes = {n: os.path.getsize(b) for n, b in body.items()}
    result = {"label": args.label, "machine": info, "facts": facts, "rows": rows,
              "body_bytes": sizes, "duration": args.duration, "conns": args.conns,
              "rate_conns": args.rate_conns}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    report = render(result)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(report)
    print(report)


def render(r):
    m, f = r["machine"], r["facts"]
    lines = [
        f"{r['label']}: {m['date']}, {m['nproc']} × {m['cpu']}, kernel {m['kernel']}, "
        f"load average before {m['loadavg_before']}, after {m['loadavg_after']}; "
        f"{r['duration']} per run, saturation with {r['conns']} connections, "
        f"fixed rate with {r['rate_conns']}; bodies: "
        + ", ".join(f"{n} {b / 1024:.1f} KiB" for n, b in r["body_bytes"].items()),
        "",
        "| server / endpoint / body | load | req/s | p50 ms | p99 ms | p99.9 ms | server CPU (cores) | server CPU µs/req | of which kernel | oha CPU (cores) | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['name']} | {row['mode']} | {row['rps']:.0f} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | "
            f"{row['p999_ms']:.3f} | {row['server_cpu_cores']:.2f} | {row['server_cpu_us_per_req']:.1f} | "
            f"{row['server_kernel_us_per_req']:.1f} | {row['oha_cpu_cores']:.2f} | {row['peak_rss_mib']:.1f} |")
    lines += [
        "",
        f"- /validate throughput vs the static responder: typical {f['validate_typical_vs_static']:.0%}, "
        f"large {f['validate_large_vs_static']:.0%}",
        f"- startup to ready (spawn to first 200 on /readyz): best {f['startup_to_ready_ms']:.1f} ms, "
        f"worst {f['startup_to_ready_ms_max']:.1f} ms of 6",
        f"- RSS: idle {f['idle_rss_mib']:.1f} MiB, idle after the load {f['idle_rss_after_load_mib']:.1f} MiB, "
        f"peak (VmHWM) {f['peak_rss_hwm_mib']:.1f} MiB; {f['threads']} threads; static responder peak "
        f"{f['static_typical_peak_rss_mib']:.1f} / {f['static_large_peak_rss_mib']:.1f} MiB",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
