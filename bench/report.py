#!/usr/bin/env python3
"""The report of one `make bench` run (bench/run.sh): Markdown from the JSON summaries in its folder.

    bench/report.py target/bench/run-<stamp>            # the report on stdout
    bench/report.py --splice docs/BENCHMARKS.md REPORT  # put REPORT between the "make bench" markers

Several chat-bench processes of one scenario (rooms-<system>-<k>.json) are merged exactly: their
latency histograms are added bucket by bucket, deliveries and messages summed; the servers' CPU is the
mean of what each process saw of the same PIDs over the same (shared-start) window.
"""
import glob
import json
import os
import re
import sys

BEGIN = "<!-- make bench: begin (written by bench/run.sh; edit bench/report.py, not this) -->"
END = "<!-- make bench: end -->"
SYSTEMS = ("ours", "baseline")
NAMES = {"ours": "ours", "baseline": "Node baseline"}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return default


def num(v, places=0):
    if v is None:
        return "-"
    return f"{v:,.{places}f}"


def quantile(buckets, q):
    """The value (µs) at quantile q of [[value, count], …] sorted by value, as HdrHistogram does."""
    total = sum(c for _, c in buckets)
    if total == 0:
        return 0
    want = max(1, round(q * total + 0.5 - 1e-9)) if q < 1 else total
    seen = 0
    for v, c in buckets:
        seen += c
        if seen >= want:
            return v
    return buckets[-1][0]


def server_cpu(s, exclude=()):
    return sum(w["cpu_secs"] for w in s["cpu"]["watched"] if w["pid"] not in exclude)


def merge(parts, redis_pid=None):
    """One summary from the summaries of processes that ran side by side."""
    buckets = {}
    for p in parts:
        for v, c in p.get("latency_histogram", []):
            buckets[v] = buckets.get(v, 0) + c
    b = sorted(buckets.items())
    errors = {}
    for p in parts:
        for k, v in p["errors"].items():
            errors[k] = errors.get(k, 0) + v
    by_pid = {}
    for p in parts:
        for w in p["cpu"]["watched"]:
            by_pid.setdefault(w["pid"], []).append(w["cpu_secs"])
    cpu = {pid: sum(v) / len(v) for pid, v in by_pid.items()}
    secs = sum(p["deliveries"]["measured_secs"] for p in parts) / len(parts)
    per_sec = sum(p["deliveries"]["per_sec"] for p in parts)
    servers = sum(v for pid, v in cpu.items() if pid != redis_pid)
    deliveries = per_sec * secs
    return {
        "connections": sum(p["connections"]["ok"] for p in parts),
        "rate": sum(p["scenario"]["rate_per_sec"] for p in parts),
        "per_sec": per_sec,
        "p50": quantile(b, 0.5) / 1000,
        "p99": quantile(b, 0.99) / 1000,
        "max": (b[-1][0] / 1000) if b else 0,
        "servers_cpu": servers,
        "redis_cpu": cpu.get(redis_pid) if redis_pid else None,
        "per_million": servers / (deliveries / 1e6) if deliveries else None,
        "bench_cpu": sum(p["cpu"]["bench_secs"] for p in parts),
        "errors": errors,
    }


def errors_text(e):
    return ", ".join(f"{k}: {v}" for k, v in sorted(e.items())) or "none"


def ratio(a, b):
    if not a or not b:
        return "-"
    return f"{a / b:.1f}×"


def histogram_from_metrics(text, name):
    """Cumulative buckets {le: count} of a Prometheus histogram."""
    out = {}
    for m in re.finditer(rf'^{name}_bucket\{{[^}}]*le="([^"]+)"[^}}]*\}} ([0-9.e+]+)$', text, re.M):
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        out[le] = out.get(le, 0) + float(m.group(2))
    return out


def lag_quantiles(before, after):
    """p50 and p99 upper bounds (s) of the worker's commit lag between two scrapes."""
    b = histogram_from_metrics(before, "chat_worker_commit_lag_seconds")
    a = histogram_from_metrics(after, "chat_worker_commit_lag_seconds")
    diff = sorted((le, a[le] - b.get(le, 0)) for le in a)
    total = diff[-1][1] if diff else 0
    if total <= 0:
        return None, None, 0
    res = []
    for q in (0.5, 0.99):
        res.append(next(le for le, c in diff if c >= q * total))
    return res[0], res[1], int(total)


def report(out):
    m = load(f"{out}/machine.json") or {}
    st = m.get("settings", {})
    scen = st.get("SCENARIOS", "")
    L = []
    w = L.append
    w(f"Run of {m.get('date', '?')} (commit {m.get('commit', '?')}{', with uncommitted changes' if m.get('dirty') else ''}), "
      f"{read(f'{out}/elapsed.secs', '?')} s in all. Machine: {m.get('cores')} cores ({m.get('cpu')}), "
      f"{m.get('mem_gib')} GiB, {m.get('os')}, Linux {m.get('kernel')}, load average before the run "
      f"{' '.join(m.get('load_before', []))}; {m.get('rustc')}; Redis {m.get('redis')}, MariaDB {m.get('mariadb')}; "
      f"baseline: node {m.get('node')}, socket.io {m.get('socket_io')}, @socket.io/redis-adapter "
      f"{m.get('redis_adapter')}. The servers, Redis, MariaDB and the load tool share the cores: compare the "
      f"systems within this run (ratios), not across runs.")
    w("")
    w("```sh")
    settings = " ".join(f'{k}="{v}"' for k, v in st.items() if v)
    w(f"make bench   # = bench/run.sh with {settings}")
    w("```")
    w("")
    w("Our gateways run with `MESSAGE_RATE_LIMIT=1000000` (the per-user limit, 5 per 10 s by default, "
      "raised for the bench's senders); the baseline has no rate limit, membership or persistence at all. "
      f"Every run's JSON, latency SVG and table are in `{out}/`.")
    w("")

    # 1. Memory per idle connection.
    counts = [int(c) for c in st.get("IDLE_COUNTS", "").split()]
    if "idle" in scen and counts:
        w("### 1. Memory per idle connection")
        w("")
        w("One fresh instance per count; RSS of the process after the connections were held 3 s; slope "
          "between the smallest and each larger count. Goal: ≤ 4 KiB per connection for ours.")
        w("")
        w("| system | connections | ok | RSS MiB | slope KiB per connection |")
        w("|---|---:|---:|---:|---:|")
        slopes = {}
        for system in SYSTEMS:
            first = None
            for n in counts:
                s = load(f"{out}/idle-{system}-{n}.json")
                if not s:
                    continue
                rss = s["cpu"]["watched"][0]["rss_kib"] or 0
                ok = s["connections"]["ok"]
                slope = None if first is None else (rss - first[1]) / max(ok - first[0], 1)
                if first is None:
                    first = (ok, rss)
                if slope is not None:
                    slopes[system] = slope
                w(f"| {NAMES[system]} | {n:,} | {ok:,} | {rss / 1024:.1f} | {num(slope, 2)} |")
        w("")
        if slopes.get("ours", 0) > 0 and slopes.get("baseline", 0) > 0:
            goal = "met" if slopes["ours"] <= 4 else "not met"
            w(f"At the largest count: ours {slopes['ours']:.2f} KiB per connection, the baseline "
              f"{slopes['baseline']:.2f}: **{ratio(slopes['baseline'], slopes['ours'])} less** (goal ≤ 4 KiB: {goal}).")
            w("")

    # 2. and 3. Fan-out and latency at half of the maximum.
    rates = st.get("RATES", "").split()
    if "fanout" in scen:
        members = st.get("MEMBERS")
        w(f"### 2. Fan-out: one room of {int(members):,} members over two instances")
        w("")
        w(f"{st.get('SENDERS')} senders; each rate runs {st.get('SECS')} s after 1 s of ramp-up; a system stops rising once "
          f"its p99 passes {st.get('P99_STOP_MS')} ms. Servers CPU is `utime + stime` of the two instances over the "
          "measured window; the load tool's own CPU is next to it. Goal: ≥ 10× the baseline's deliveries per "
          "CPU-second.")
        w("")
        w("| system | msgs/s | deliveries/s | p50 ms | p99 ms | max ms | servers CPU-s | CPU-s per 1M deliveries | bench CPU-s | errors |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        runs = {}
        measured = {m.group(1) for f in glob.glob(f"{out}/*.json")
                    if (m := re.match(r"(?:ours|baseline)-([0-9.]+)\.json$", os.path.basename(f)))}
        for rate in sorted(measured, key=float):
            for system in SYSTEMS:
                s = load(f"{out}/{system}-{rate}.json")
                if not s:
                    continue
                runs[(system, rate)] = s
                l = s["latency"]
                w(f"| {NAMES[system]} | {rate} | {s['deliveries']['per_sec']:,.0f} | {l['p50_ms']:.2f} | {l['p99_ms']:.2f} "
                  f"| {l['max_ms']:.2f} | {server_cpu(s):.2f} | {num(s['cpu']['watched_secs_per_million_deliveries'], 2)} "
                  f"| {s['cpu']['bench_secs']:.2f} | {errors_text(s['errors'])} |")
        w("")
        mx = {sy: read(f"{out}/{sy}-max.rate") for sy in SYSTEMS}
        half = {sy: read(f"{out}/{sy}-half.rate") for sy in SYSTEMS}
        lines = []
        for sy in SYSTEMS:
            if mx[sy]:
                s = runs.get((sy, mx[sy]))
                lines.append(f"{NAMES[sy]} {float(mx[sy]):g} msgs/s ({s['deliveries']['per_sec']:,.0f} deliveries/s)")
            else:
                lines.append(f"{NAMES[sy]}: p99 over the limit at the lowest rate")
        w("**Maximum** (the highest rate with p99 under the limit): " + "; ".join(lines) + ".")
        w("")
        same = [r for r in rates if ("ours", r) in runs and ("baseline", r) in runs]
        per = []
        for r in same:
            a = runs[("ours", r)]["cpu"]["watched_secs_per_million_deliveries"]
            b = runs[("baseline", r)]["cpu"]["watched_secs_per_million_deliveries"]
            if a and b:
                per.append((r, b / a))
        if per:
            w("**CPU per delivery, baseline ÷ ours, at the same rate**: " +
              ", ".join(f"{r} msgs/s {x:.2f}×" for r, x in per) +
              f" (goal ≥ 10×: {'met' if min(x for _, x in per) >= 10 else 'not met'}).")
            w("")
        if mx["ours"] and mx["baseline"]:
            a = runs[("ours", mx["ours"])]["cpu"]["watched_secs_per_million_deliveries"]
            b = runs[("baseline", mx["baseline"])]["cpu"]["watched_secs_per_million_deliveries"]
            if a and b:
                w(f"At each system's own maximum: ours {a:.2f} CPU-s per million deliveries, the baseline {b:.2f} "
                  f"({b / a:.2f}×); maximum deliveries/s {ratio(runs[('ours', mx['ours'])]['deliveries']['per_sec'], runs[('baseline', mx['baseline'])]['deliveries']['per_sec'])} the baseline's.")
                w("")
        w("### 3. Latency at half of each system's maximum")
        w("")
        w("| system | msgs/s (half of max) | deliveries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for sy in SYSTEMS:
            s = load(f"{out}/{sy}-{half[sy]}.json") if half[sy] else None
            if not s:
                w(f"| {NAMES[sy]} | - | - | - | - | - | - | - |")
                continue
            l = s["latency"]
            w(f"| {NAMES[sy]} | {half[sy]} | {s['deliveries']['per_sec']:,.0f} | {l['p50_ms']:.2f} | {l['p90_ms']:.2f} "
              f"| {l['p99_ms']:.2f} | {l['p999_ms']:.2f} | {l['max_ms']:.2f} |")
        w("")
        s = load(f"{out}/ours-{half['ours']}.json") if half["ours"] else None
        if s:
            w(f"Goal p99 ≤ 5 ms for ours: {'met' if s['latency']['p99_ms'] <= 5 else 'not met'} "
              f"({s['latency']['p99_ms']:.2f} ms).")
            w("")

    # 4. Persistence under load.
    s = load(f"{out}/persist.json") if "persist" in scen else None
    if s:
        p = s["persistence"]
        lag50, lag99, n = lag_quantiles(read(f"{out}/persist-metrics-before.txt", ""), read(f"{out}/persist-metrics-after.txt", ""))
        w("### 4. Persistence under load (ours)")
        w("")
        w(f"The worker running; the fan-out at {s['scenario']['rate_per_sec']:g} msgs/s (half of our maximum unless "
          "`PERSIST_RATE` is set); afterwards the run's rows counted in MariaDB against the acks the tool "
          "received. Commit lag is the worker's `chat_worker_commit_lag_seconds` (`XADD` → `COMMIT`) over the "
          "run, as bucket upper bounds.")
        w("")
        w("| msgs/s | acked | rows | missing | commit lag p50 | p99 | rows/s (first send → last row) | last send → last row s | gateways + worker CPU-s | errors |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        fmt_lag = lambda v: "-" if v is None else f"≤ {v * 1000:g} ms"
        w(f"| {s['scenario']['rate_per_sec']:g} | {p['expected']:,} | {p['rows']:,} | {p['missing']} | {fmt_lag(lag50)} "
          f"| {fmt_lag(lag99)} | {p['rows_per_sec']:g} | {p['lag_after_last_send_secs']} | {server_cpu(s):.2f} "
          f"| {errors_text(s['errors'])} |")
        w("")
        w(f"Nothing lost: {'yes' if p['missing'] == 0 and p['complete'] else 'NO'} "
          f"({p['rows']:,} rows for {p['expected']:,} acks).")
        w("")

    # 5. Many rooms.
    if "rooms" in scen:
        merged = {}
        for sy in SYSTEMS:
            parts = [load(f) for f in sorted(glob.glob(f"{out}/rooms-{sy}-[0-9]*.json"))]
            parts = [p for p in parts if p]
            if parts:
                rp = read(f"{out}/rooms-{sy}.redis-pid")
                merged[sy] = merge(parts, int(rp) if rp else None)
        if merged:
            w(f"### 5. Many rooms: {int(st.get('ROOMS')):,} rooms of {st.get('ROOM_MEMBERS')} members")
            w("")
            w(f"{st.get('ROOM_INSTANCES')} instances of each system; one sender per room, {st.get('ROOM_RATE')} msgs/s in all, "
              f"{st.get('SECS')} s after 1 s of ramp-up; {st.get('ROOM_PROCS')} load-tool processes started together "
              "(a process may hold at most 20,000 files), merged exactly. Ours subscribes each instance to the "
              "rooms it has members in; the adapter sends every message to every instance. Redis's CPU is apart.")
            w("")
            w("| system | connections | msgs/s | deliveries/s | p50 ms | p99 ms | max ms | servers CPU-s | CPU-s per 1M deliveries | Redis CPU-s | bench CPU-s | errors |")
            w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
            for sy, r in merged.items():
                w(f"| {NAMES[sy]} | {r['connections']:,} | {r['rate']:g} | {r['per_sec']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} "
                  f"| {r['max']:.2f} | {r['servers_cpu']:.2f} | {num(r['per_million'], 1)} | {num(r['redis_cpu'], 2)} "
                  f"| {r['bench_cpu']:.2f} | {errors_text(r['errors'])} |")
            w("")
            if "ours" in merged and "baseline" in merged:
                a, b = merged["ours"], merged["baseline"]
                w(f"Baseline ÷ ours: servers CPU per delivery {ratio(b['per_million'], a['per_million'])}, "
                  f"Redis CPU {ratio(b['redis_cpu'], a['redis_cpu'])}, p99 {ratio(b['p99'], a['p99'])}.")
                w("")
    return "\n".join(L)


def splice(doc, rep):
    with open(doc) as f:
        text = f.read()
    with open(rep) as f:
        body = f.read().rstrip("\n")
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n## `make bench`: side by side with the Node baseline\n\n" + block + "\n"
    with open(doc, "w") as f:
        f.write(text)


def selftest():
    """Checks of the merge arithmetic (run by scripts/test.d/50-bench-smoke.sh)."""
    b = [[v, 1] for v in range(1, 101)]  # 1 … 100 µs
    assert quantile(b, 0.5) == 50 and quantile(b, 0.99) == 99 and quantile(b, 1.0) == 100, "quantile"

    def part(pid_cpu, per_sec, hist):
        return {"connections": {"ok": 10, "failed": 0, "open_secs": 1.0},
                "messages": {"sent": 5, "acked": 5}, "scenario": {"rate_per_sec": 50.0, "rooms": 2},
                "deliveries": {"per_sec": per_sec, "measured_secs": 2.0}, "errors": {"X": 1},
                "cpu": {"watched": [{"pid": 1, "cpu_secs": pid_cpu}, {"pid": 9, "cpu_secs": 0.5}], "bench_secs": 0.1},
                "latency_histogram": hist}
    m = merge([part(1.0, 1000.0, [[10, 3], [20, 1]]), part(3.0, 3000.0, [[10, 1], [30, 4]])], redis_pid=9)
    assert m["connections"] == 20 and m["per_sec"] == 4000.0 and m["errors"] == {"X": 2}, m
    assert (m["p50"], m["p99"], m["max"]) == (0.02, 0.03, 0.03), m  # 10×4, 20×1, 30×4 µs
    assert m["servers_cpu"] == 2.0 and m["redis_cpu"] == 0.5, m  # the mean per PID, Redis apart
    assert m["per_million"] == 2.0 / (8000 / 1e6), m
    lag = 'chat_worker_commit_lag_seconds_bucket{le="0.01"} %d\nchat_worker_commit_lag_seconds_bucket{le="0.1"} %d\n' \
          'chat_worker_commit_lag_seconds_bucket{le="+Inf"} %d\n'
    assert lag_quantiles(lag % (5, 5, 5), lag % (95, 104, 105)) == (0.01, 0.1, 100)
    print("bench/report.py: selftest ok")


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--selftest":
        selftest()
    elif len(sys.argv) == 4 and sys.argv[1] == "--splice":
        splice(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 2:
        print(report(sys.argv[1]))
    else:
        sys.exit(__doc__)
