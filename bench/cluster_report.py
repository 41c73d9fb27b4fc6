#!/usr/bin/env python3
"""The report of bench/cluster.sh (markdown on stdout), from the run folder it wrote.

  cluster_report.py OUT "MODES" ROOMS MEMBERS RATE SECS IDLE_SECS
"""
import glob, json, os, subprocess, sys
out, modes, rooms, members, rate, secs, idle_secs = sys.argv[1], sys.argv[2].split(), *map(float, sys.argv[3:])
def bench(name):
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{name}-[0-9].json"))]
    return {k: sum(r["messages"][k] for r in runs) for k in ("sent", "acked", "refused")} | {
        "connections": sum(r["connections"]["ok"] for r in runs),
        "p99": max(r["latency"]["p99_ms"] for r in runs)}
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
redis = sh("redis-server --version | grep -o 'v=[^ ]*' | cut -c3-")
print(f"Run of {sh('date -u +%Y-%m-%dT%H:%M:%SZ')} (commit {sh('git rev-parse --short HEAD')}), "
      f"{os.cpu_count()} cores, Redis {redis}; "
      f"{int(rooms)} rooms x {int(members)} members over 2 gateways + the worker, {rate:g} msgs/s for {secs:g} s, "
      f"then {idle_secs:g} s idle.\n")
print("| Redis | node | role | sends: CPU-s | µs CPU per message | µs in commands per message | top commands (µs per message) | idle: commands per connection per minute |")
print("|---|---|---|---:|---:|---:|---|---:|")
proj = {}
shares = {}
for mode in modes:
    s, i = bench(f"{mode}-sends"), bench(f"{mode}-idle")
    rs, ri = (json.load(open(f"{out}/{mode}-{k}.redis.json")) for k in ("sends", "idle"))
    n = max(s["acked"], 1)
    minutes = (idle_secs + 2.2) / 60  # ramp-up 1 s + 1.2 s of the drain
    for port, c in rs.items():
        top = ", ".join(f"{k} {v['usec'] / n:.1f}" for k, v in list(c["top"].items())[:4])
        idle = ri[port]["commands"] / max(i["connections"], 1) / minutes
        print(f"| {mode} | {port} | {c['role']} | {c['cpu_s']:.2f} | {c['cpu_s'] * 1e6 / n:.1f} | {c['usec'] / n:.1f} | {top} | {idle:.4f} |")
    cpu = sum(c["cpu_s"] for c in rs.values()) * 1e6 / n
    usec = sum(c["usec"] for c in rs.values()) / n
    busiest = max(c["cpu_s"] for c in rs.values() if c["role"] == "master") * 1e6 / n
    idle = sum(c["commands"] for c in ri.values()) / max(i["connections"], 1) / minutes
    proj[mode] = busiest
    # Each master's share of the sends (one XADD each) and its CPU per send of its own.
    share = {p: c["top"].get("xadd", {}).get("calls", 0) for p, c in rs.items() if c["role"] == "master"}
    for p, c in rs.items():
        if c["role"] == "master":
            # xadd may fall out of the top commands: count it from the snapshots.
            a_ = json.load(open(f"{out}/{mode}-sends.before.json"))[p]["cmds"].get("xadd", {"calls": 0})
            b_ = json.load(open(f"{out}/{mode}-sends.after.json"))[p]["cmds"].get("xadd", {"calls": 0})
            share[p] = b_["calls"] - a_["calls"]
    total = max(sum(share.values()), 1)
    shares[mode] = {p: (k / total, rs[p]["cpu_s"] * 1e6 / max(k, 1)) for p, k in share.items()}
    print(f"| **{mode}** | all | | {sum(c['cpu_s'] for c in rs.values()):.2f} | **{cpu:.1f}** | **{usec:.1f}** | {s['acked']} acked, {s['refused']} refused, p99 {s['p99']:.1f} ms | **{idle:.4f}** |")
print()
for mode, b in proj.items():
    print(f"- {mode}: the busiest master spends {b:.1f} µs of CPU per message sent anywhere: Redis allows ≈ {1e6 / b:,.0f} msgs/s")
for mode, sh_ in shares.items():
    if len(sh_) > 1:
        parts = ", ".join(f"{p} {s * 100:.0f} % at {c:.0f} µs" for p, (s, c) in sorted(sh_.items()))
        print(f"- {mode}: each master's share of the sends and its CPU per send of its own: {parts}; "
              f"at one cost per send for all, 3 masters carry 1 ÷ (largest share) = {1 / max(s for s, _ in sh_.values()):.2f}× one master's load")
for c in ("cluster", "cluster-nowait"):
    if "single" in proj and c in proj:
        print(f"- projected throughput, {c} (3 masters) ÷ single: **{proj['single'] / proj[c]:.2f}×**")
if "cluster" in proj and "cluster-nowait" in proj:
    print(f"- waiting for a replica (WAIT 1) costs the busiest master {proj['cluster'] - proj['cluster-nowait']:.1f} µs of CPU per message sent")
