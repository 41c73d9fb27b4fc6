#!/usr/bin/env python3
"""What Redis spent, node by node: snapshots of INFO (cpu, commandstats, stats, replication) and
the difference between two of them, for bench/cluster.sh.

  redis_cost.py snap PORT[,PORT…] > snap.json
  redis_cost.py diff before.json after.json > cost.json

A diff gives, per node, its role, CPU seconds (used_cpu_user + used_cpu_sys: the main thread and
everything else the process did), microseconds spent in commands (commandstats usec), commands
processed, and the calls and usec of the commands that cost most.
"""
import json
import subprocess
import sys


def info(port, section):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", section], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    return dict(l.split(":", 1) for l in out.replace("\r", "").splitlines() if ":" in l and not l.startswith("#"))


def snap(ports):
    nodes = {}
    for port in ports:
        cpu = info(port, "cpu")
        stats = info(port, "stats")
        repl = info(port, "replication")
        cmds = {}
        for k, v in info(port, "commandstats").items():
            fields = dict(f.split("=", 1) for f in v.split(","))
            cmds[k.removeprefix("cmdstat_")] = {"calls": int(fields["calls"]), "usec": int(fields["usec"])}
        nodes[str(port)] = {
            "role": repl.get("role", "?"),
            "cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            "commands": int(stats["total_commands_processed"]),
            "cmds": cmds,
        }
    return nodes


def diff(a, b):
    out = {}
    for port, after in b.items():
        before = a.get(port, {"cpu_s": 0, "commands": 0, "cmds": {}})
        cmds = {}
        for name, c in after["cmds"].items():
            p = before["cmds"].get(name, {"calls": 0, "usec": 0})
            calls, usec = c["calls"] - p["calls"], c["usec"] - p["usec"]
            if calls > 0:
                cmds[name] = {"calls": calls, "usec": usec}
        out[port] = {
            "role": after["role"],
            "cpu_s": round(after["cpu_s"] - before["cpu_s"], 3),
            "commands": after["commands"] - before["commands"],
            "usec": sum(c["usec"] for c in cmds.values()),
            "top": dict(sorted(cmds.items(), key=lambda kv: -kv[1]["usec"])[:6]),
        }
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "snap":
        json.dump(snap([int(p) for p in sys.argv[2].split(",")]), sys.stdout)
    elif len(sys.argv) == 4 and sys.argv[1] == "diff":
        json.dump(diff(json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))), sys.stdout, indent=1)
    else:
        sys.exit(__doc__)
