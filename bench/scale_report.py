#!/usr/bin/env python3
"""Renders bench/scale.sh's results.jsonl as Markdown: one table (every
size, old and new build side by side), memory growth per headless Service
(least squares over the sizes), and the targets of issue 12.

usage: scale_report.py RESULTS.jsonl
"""
import json
import sys

MIB = 1024.0


def slope(points):
    """Least-squares slope and intercept of (x, y) points."""
    n = len(points)
    if n < 2:
        return float("nan"), float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return float("nan"), my
    k = sum((x - mx) * (y - my) for x, y in points) / sxx
    return k, my - k * mx


def quiet(r):
    """Quiet at the start, and builds seen in the samples of the serve and
    audit runs (busy/samples), if recorded."""
    text = f"{r['quiet']}, load {r['load'].split()[0]}"
    if "busy_serve" in r:
        text += f"; busy {r['busy_serve']} s · {r['busy_audit']} s"
    return text


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    out = [
        "| Services (headless) | StatefulSets | build | to /readyz s | RSS after sync MiB | "
        "RSS after load MiB | VmHWM MiB | /validate p50 · p99 · p99.9 ms (oha) | "
        "varied p50 · p99 ms | API requests / admissions | audit s | audit peak RSS MiB | quiet at start; busy during serve · audit |",
        "|---|---:|---|---:|---:|---:|---:|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        o, v = r["oha"], r["varied"]
        admissions = r["api_lookups"] + r["cache_lookups"]
        api = r["api_lookups"] + r.get("budget_api_lookups", 0)
        seen = r["apiserver_service_gets"] + r.get("apiserver_pdb_lists", 0)
        warned = f", {v['warned']} warned" if v.get("warned") else ""
        out.append(
            f"| {r['size']:,} ({r['headless']:,}) | {r['statefulsets']:,} | {r['build']} `{r['rev']}` | "
            f"{r['ready_s']:.2f} | {r['rss_sync_kib'] / MIB:.1f} | {r['rss_load_kib'] / MIB:.1f} | "
            f"{r['hwm_kib'] / MIB:.1f} | {o['p50']:.3f} · {o['p99']:.3f} · {o['p999']:.3f} | "
            f"{v['p50']:.3f} · {v['p99']:.3f}{warned} | {api} / {admissions:,} (API server: {seen}) | "
            f"{r['audit_s']:.2f} | {r['audit_rss_kib'] / MIB:.1f} | {quiet(r)} |")
    out.append("")
    by = {(r["build"], r["size"]): r for r in rows}
    for build in ["old", "new"]:
        pts = [(r["headless"], r["rss_sync_kib"] * 1024) for r in rows if r["build"] == build]
        k, c = slope(pts)
        apts = [(r["size"], r["audit_rss_kib"] * 1024) for r in rows if r["build"] == build]
        ka, ca = slope(apts)
        if len(pts) >= 2:
            out.append(
                f"- {build}: RSS after sync ≈ {c / 2**20:.1f} MiB + {k:,.0f} bytes per headless Service "
                f"(= {k / 3:,.0f} bytes per Service at a third headless); audit peak RSS ≈ "
                f"{ca / 2**20:.1f} MiB + {ka:,.0f} bytes per Service (StatefulSets grow with it up to their cap)")
    out.append("")
    checks = []
    new20, new50 = by.get(("new", 20000)), by.get(("new", 50000))
    small = min((r for r in rows if r["build"] == "new"), key=lambda r: r["size"], default=None)
    if new20:
        v = new20["rss_sync_kib"] / MIB
        checks.append(f"RSS after sync at 20,000 Services ≤ 24 MiB: {v:.1f} MiB — {'met' if v <= 24 else 'NOT met'}")
    if new50:
        v = new50["rss_sync_kib"] / MIB
        checks.append(f"RSS after sync at 50,000 Services ≤ 32 MiB: {v:.1f} MiB — {'met' if v <= 32 else 'NOT met'}")
        if small and small["size"] < 50000:
            a, b = new50["oha"]["p99"], small["oha"]["p99"]
            checks.append(
                f"/validate p99 at 50,000 within 10 % of at {small['size']:,}: {a:.3f} vs {b:.3f} ms "
                f"({(a / b - 1) * 100:+.1f} %) — {'met' if a <= 1.1 * b else 'NOT met'}")
        v = new50["audit_rss_kib"] / MIB
        checks.append(
            f"audit over {new50['statefulsets']:,} StatefulSets and 50,000 Services, peak RSS ≤ 64 MiB: "
            f"{v:.1f} MiB — {'met' if v <= 64 else 'NOT met'}")
    news = [r for r in rows if r["build"] == "new"]
    if news:
        total = sum(r["api_lookups"] + r.get("budget_api_lookups", 0) for r in news)
        checks.append(f"API requests per admission (headless Service in the cache), new build: "
                      f"{total} over all sizes — {'met' if total == 0 else 'NOT met'}")
    out += [f"- target: {c}" for c in checks]
    print("\n".join(out))


if __name__ == "__main__":
    main()
