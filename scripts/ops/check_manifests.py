#!/usr/bin/env python3
"""Consistency checks of the deployment files that no schema can express.

Run by scripts/test.d/15-manifests.sh after the schema checks, with the rendered Kubernetes overlays:
    check_manifests.py --rendered DIR [--dashboard-rules OUT.yml]
DIR holds one <overlay>.yaml per overlay (the output of `kustomize build k8s/overlays/<overlay>`).

Checks:
  env        every variable the services read (crates/config, any env::var in the services and crates,
             the gateway's settings, OTEL_*, RUST_LOG) is documented in README.md or docs/OPERATIONS.md
             and set in docker-compose.yml and in every overlay for each service that reads it, unless
             scripts/ops/env-allowlist.txt says why not (and the allow-list has no stale entries)
  k8s        security contexts, resources, probes, graceful shutdown of the gateway, and that the
             objects refer to each other correctly (Services, Ingress backends, HPAs, PDBs,
             ConfigMaps/Secrets, images pinned in prod)
  compose    Redis persistence, the load balancer's upstreams and mounts, Prometheus targets
  metrics    the dashboard and the alerts use exactly the metric names of scripts/ops/metrics.txt, which
             are those the services define
  otel       the collector's pipelines use defined components of the core distribution
  docker     the image's build context (deploy/Dockerfile.dockerignore) lets in every file the workspace
             needs to build, and the binaries the Dockerfile copies are the services' binaries
Exit status 1 when anything fails; every problem is printed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("chat-api", "chat-gateway", "chat-worker")

# Read by the gateway (services/gateway), on top of the shared settings.
GATEWAY_VARS = [
    "GATEWAY_PORT", "GATEWAY_ID", "PRESENCE_TTL_SECS", "PRESENCE_HEARTBEAT_SECS", "RECOVERY_WINDOW_SECS",
    "RECENT_LOG_SIZE", "TYPING_TIMEOUT_MS", "JOIN_ONLINE_LIST_MAX", "SIO_PING_INTERVAL_MS", "SIO_PING_TIMEOUT_MS",
    "SIO_MAX_PAYLOAD", "SEND_QUEUE_CAPACITY", "SHUTDOWN_DRAIN_SECS",
]
# Standard OpenTelemetry SDK variables every service honours, and the log filter (tracing's EnvFilter).
OTEL_VARS = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"]
OTHER_VARS = ["RUST_LOG"]
# Only this service reads these (everything else is read by all three).
OWNER_PREFIXES = {"WORKER_": "chat-worker", "WEB_": "chat-api"}
# Test-only variables of the test kit and the examples: not service settings.
NOT_SERVICE_DIRS = ("crates/testkit", "/examples/", "/tests/", "/benches/", "/bench/")

# The core OpenTelemetry Collector distribution (image otel/opentelemetry-collector).
OTEL_CORE = {
    "receivers": {"otlp", "nop"},
    "processors": {"batch", "memory_limiter"},
    "exporters": {"otlp", "otlphttp", "debug", "nop"},
    "extensions": {"zpages", "memory_limiter"},
    "connectors": {"forward"},
}

errors: list[str] = []


def fail(group: str, msg: str) -> None:
    errors.append(f"{group}: {msg}")


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# ----------------------------------------------------------------------------------------------- env

def variables_read() -> dict[str, str]:
    """Variable -> where it is read."""
    found: dict[str, str] = {}
    config = (ROOT / "crates/config/src/lib.rs").read_text().split("#[cfg(test)]")[0]
    for m in re.finditer(r'(?:\br\.(?:num|string|flag)|\bget)\(\s*"([A-Z][A-Z0-9_]*)"', config):
        found.setdefault(m.group(1), "crates/config")
    for rs in list(ROOT.glob("crates/*/src/**/*.rs")) + list(ROOT.glob("services/*/src/**/*.rs")):
        rel = rs.relative_to(ROOT).as_posix()
        if any(d in "/" + rel for d in NOT_SERVICE_DIRS):
            continue
        text = rs.read_text().split("#[cfg(test)]")[0]
        for m in re.finditer(r'env::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"', text):
            found.setdefault(m.group(1), rel)
    for v in GATEWAY_VARS:
        found.setdefault(v, "the gateway")
    for v in OTEL_VARS:
        found.setdefault(v, "OpenTelemetry")
    for v in OTHER_VARS:
        found.setdefault(v, "chat-telemetry (EnvFilter)")
    return found


def owners(var: str) -> tuple[str, ...]:
    if var in GATEWAY_VARS and var != "GATEWAY_PORT":
        return ("chat-gateway",)
    for prefix, svc in OWNER_PREFIXES.items():
        if var.startswith(prefix) and var != "WORKER_PORT":
            return (svc,)
    return SERVICES


def load_allowlist() -> dict[tuple[str, str], str]:
    out = {}
    for line in (ROOT / "scripts/ops/env-allowlist.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3 or parts[1] not in ("compose", "k8s", "all"):
            fail("env", f"env-allowlist.txt: malformed line {line!r} (VARIABLE compose|k8s|all reason)")
            continue
        out[(parts[0], parts[1])] = parts[2]
    return out


def allowed(allow: dict, var: str, target: str) -> bool:
    return (var, target) in allow or (var, "all") in allow


def compose_envs(compose: dict) -> dict[str, set[str]]:
    """Service binary -> the variables set on every compose service running it (migrate excluded)."""
    out: dict[str, list[set[str]]] = {}
    for name, svc in compose["services"].items():
        cmd = svc.get("command") or []
        if not cmd or cmd[0] not in SERVICES or len(cmd) > 1:
            continue
        env = svc.get("environment") or {}
        keys = set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
        out.setdefault(cmd[0], []).append(keys)
    return {svc: set.intersection(*sets) for svc, sets in out.items()}


def k8s_envs(objects: list[dict], overlay: str) -> dict[str, set[str]]:
    """Service binary -> the variables its Deployment's container gets, per overlay."""
    configmaps = {o["metadata"]["name"]: set(o.get("data", {})) for o in objects if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"]: set(o.get("stringData", {})) | set(o.get("data", {}))
               for o in objects if o["kind"] == "Secret"}
    example = ROOT / f"k8s/overlays/{overlay}/secret.example.yaml"
    if example.exists():
        for o in load_all(example):
            secrets.setdefault(o["metadata"]["name"], set(o.get("stringData", {})) | set(o.get("data", {})))
    out: dict[str, set[str]] = {}
    for o in objects:
        if o["kind"] != "Deployment":
            continue
        for c in o["spec"]["template"]["spec"]["containers"]:
            binary = Path((c.get("command") or [""])[0]).name
            if binary not in SERVICES:
                continue
            keys = {e["name"] for e in c.get("env", [])}
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    name = src["configMapRef"]["name"]
                    if name not in configmaps:
                        fail("k8s", f"{overlay}: {o['metadata']['name']} uses ConfigMap {name!r}, which is not rendered")
                    keys |= configmaps.get(name, set())
                if "secretRef" in src:
                    name = src["secretRef"]["name"]
                    if name not in secrets:
                        fail("k8s", f"{overlay}: {o['metadata']['name']} uses Secret {name!r}: neither rendered nor in secret.example.yaml")
                    keys |= secrets.get(name, set())
            out[binary] = keys
    for svc in SERVICES:
        if svc not in out:
            fail("k8s", f"{overlay}: no Deployment runs {svc}")
    return out


def check_env(compose: dict, rendered: dict[str, list[dict]]) -> None:
    read = variables_read()
    allow = load_allowlist()
    docs = (ROOT / "README.md").read_text()
    ops = ROOT / "docs/OPERATIONS.md"
    docs += ops.read_text() if ops.exists() else ""
    targets = {"compose": compose_envs(compose)}
    for overlay, objects in rendered.items():
        targets[f"k8s/{overlay}"] = k8s_envs(objects, overlay)
    for var, where in sorted(read.items()):
        if f"`{var}`" not in docs:
            fail("env", f"{var} (read by {where}) is documented in neither README.md nor docs/OPERATIONS.md")
        for target, envs in targets.items():
            kind = "compose" if target == "compose" else "k8s"
            if allowed(allow, var, kind):
                continue
            for svc in owners(var):
                if var not in envs.get(svc, set()):
                    fail("env", f"{var} (read by {where}) is not set for {svc} in {target} "
                                f"(set it, or allow-list it with a reason in scripts/ops/env-allowlist.txt)")
    for (var, kind), _ in allow.items():
        if var not in read:
            fail("env", f"env-allowlist.txt: {var} is not read by any service; remove it")
            continue
        for target, envs in targets.items():
            if kind not in ("all", "compose" if target == "compose" else "k8s"):
                continue
            if all(var in envs.get(svc, set()) for svc in owners(var)):
                fail("env", f"env-allowlist.txt: {var} is set in {target} after all; remove the entry")
    print(f"env: {len(read)} variables checked against the docs, compose and {len(rendered)} overlays")


# ----------------------------------------------------------------------------------------------- k8s

def pod_templates(objects):
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield o, o["spec"]["template"]


def is_chat(template: dict) -> bool:
    return template["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "chat"


def seconds(v) -> int:
    return int(str(v).rstrip("s"))


def check_k8s(overlay: str, objects: list[dict]) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for o in objects:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    deployments = by_kind.get("Deployment", {})
    cm = by_kind.get("ConfigMap", {}).get("chat-config", {}).get("data", {})
    if not cm:
        fail("k8s", f"{overlay}: ConfigMap chat-config is missing or empty")

    for o, tpl in pod_templates(objects):
        name = f"{overlay}: {o['kind']} {o['metadata']['name']}"
        spec = tpl["spec"]
        if not is_chat(tpl):
            continue
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            fail("k8s", f"{name}: pod securityContext.runAsNonRoot must be true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail("k8s", f"{name}: pod seccompProfile must be RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            fail("k8s", f"{name}: automountServiceAccountToken must be false")
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            cname = f"{name} container {c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                fail("k8s", f"{cname}: readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                fail("k8s", f"{cname}: allowPrivilegeEscalation must be false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                fail("k8s", f"{cname}: capabilities must drop ALL")
            res = c.get("resources", {})
            for part, keys in (("requests", ("cpu", "memory")), ("limits", ("cpu", "memory"))):
                for k in keys:
                    if k not in res.get(part, {}):
                        fail("k8s", f"{cname}: resources.{part}.{k} is not set")
            image = c.get("image", "")
            if overlay == "prod" and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
                fail("k8s", f"{cname}: prod images must carry a pinned tag, got {image!r}")
            if o["kind"] == "Deployment":
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in c:
                        fail("k8s", f"{cname}: {probe} is missing")

    gw = deployments.get("chat-gateway")
    if gw:
        spec = gw["spec"]["template"]["spec"]
        c = spec["containers"][0]
        pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        drain = int(next((e.get("value") for e in c.get("env", []) if e["name"] == "SHUTDOWN_DRAIN_SECS"),
                         cm.get("SHUTDOWN_DRAIN_SECS", 10)))
        if pre is None:
            fail("k8s", f"{overlay}: the gateway needs a preStop sleep (the ingress must stop routing to it before SIGTERM)")
        elif grace < pre + drain + 5:
            fail("k8s", f"{overlay}: gateway terminationGracePeriodSeconds {grace} < preStop {pre} + SHUTDOWN_DRAIN_SECS {drain} + 5")
        if gw["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable") not in (0, "0", "0%"):
            fail("k8s", f"{overlay}: the gateway's rolling update must keep maxUnavailable 0")

    # References between objects.
    templates = {o["metadata"]["name"]: tpl["metadata"].get("labels", {}) for o, tpl in pod_templates(objects)}

    def selects(selector: dict, labels: dict) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    for svc in by_kind.get("Service", {}).values():
        sel = svc["spec"].get("selector", {})
        hits = [n for n, labels in templates.items() if selects(sel, labels)]
        if not hits:
            fail("k8s", f"{overlay}: Service {svc['metadata']['name']} selects no pods")
        for port in svc["spec"]["ports"]:
            tp = port.get("targetPort")
            if isinstance(tp, str):
                named = {p.get("name") for n in hits for o in [by_kind.get("Deployment", {}).get(n) or
                         by_kind.get("StatefulSet", {}).get(n)] if o
                         for c in o["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                if tp not in named:
                    fail("k8s", f"{overlay}: Service {svc['metadata']['name']} targets port {tp!r}, which its pods do not name")
    for ing in by_kind.get("Ingress", {}).values():
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                b = p["backend"]["service"]
                svc = by_kind.get("Service", {}).get(b["name"])
                if not svc:
                    fail("k8s", f"{overlay}: Ingress {ing['metadata']['name']} routes to a missing Service {b['name']}")
                elif "name" in b["port"] and b["port"]["name"] not in {x.get("name") for x in svc["spec"]["ports"]}:
                    fail("k8s", f"{overlay}: Ingress {ing['metadata']['name']} uses port {b['port']['name']!r} of {b['name']}, which has none")
    sio = by_kind.get("Ingress", {}).get("chat-socketio")
    if not sio:
        fail("k8s", f"{overlay}: Ingress chat-socketio (/socket.io/ -> gateways) is missing")
    else:
        ann = sio["metadata"].get("annotations", {})
        if ann.get("nginx.ingress.kubernetes.io/affinity") != "cookie":
            fail("k8s", f"{overlay}: chat-socketio needs cookie affinity for long-polling clients")
        for key in ("proxy-read-timeout", "proxy-send-timeout"):
            if int(ann.get(f"nginx.ingress.kubernetes.io/{key}", 60)) < 120:
                fail("k8s", f"{overlay}: chat-socketio {key} must be long (idle WebSockets, held long-polls)")
    for name in deployments:
        if name.startswith("chat-"):
            if not any(h["spec"]["scaleTargetRef"]["name"] == name for h in by_kind.get("HorizontalPodAutoscaler", {}).values()):
                fail("k8s", f"{overlay}: no HorizontalPodAutoscaler for {name}")
            if not any(selects(p["spec"]["selector"].get("matchLabels", {}), templates[name])
                       for p in by_kind.get("PodDisruptionBudget", {}).values()):
                fail("k8s", f"{overlay}: no PodDisruptionBudget selects {name}")
    for h in by_kind.get("HorizontalPodAutoscaler", {}).values():
        target = h["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            fail("k8s", f"{overlay}: HPA {h['metadata']['name']} scales a missing Deployment {target}")
        if h["spec"].get("minReplicas", 1) > h["spec"]["maxReplicas"]:
            fail("k8s", f"{overlay}: HPA {h['metadata']['name']} has minReplicas > maxReplicas")
    for p in by_kind.get("NetworkPolicy", {}).values():
        sel = p["spec"]["podSelector"].get("matchLabels", {})
        if not any(selects(sel, labels) for labels in templates.values()):
            fail("k8s", f"{overlay}: NetworkPolicy {p['metadata']['name']} selects no pods")
    if "Job" not in by_kind or "chat-migrate" not in by_kind["Job"]:
        fail("k8s", f"{overlay}: the migration Job chat-migrate is missing")
    print(f"k8s/{overlay}: {len(objects)} objects, {len(deployments)} Deployments checked")


# ------------------------------------------------------------------------------------------- compose

def check_compose(compose: dict) -> None:
    services = compose["services"]
    redis = services.get("redis", {})
    cmd = " ".join(str(x) for x in redis.get("command", []))
    for need in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        if need not in cmd:
            fail("compose", f"redis must run with {need} (acked messages live in the stream until the worker writes them)")
    gateways = [n for n, s in services.items() if (s.get("command") or [None])[0] == "chat-gateway"]
    if len(gateways) < 2:
        fail("compose", f"two gateways expected, found {gateways}")
    for n in gateways:
        env = services[n].get("environment", {})
        drain = int(env.get("SHUTDOWN_DRAIN_SECS", 10))
        grace = seconds(services[n].get("stop_grace_period", "10s"))
        if grace < drain + 5:
            fail("compose", f"{n}: stop_grace_period {grace}s < SHUTDOWN_DRAIN_SECS {drain} + 5")
    ids = [services[n].get("environment", {}).get("GATEWAY_ID") for n in gateways]
    if len(set(ids)) != len(ids):
        fail("compose", f"the gateways need distinct GATEWAY_IDs, got {ids}")
    lb = services.get("lb")
    if not lb or not any(str(p).startswith("8080:") for p in lb.get("ports", [])):
        fail("compose", "the load balancer `lb` must publish port 8080")
    published = [n for n, s in services.items() if s.get("ports") and not s.get("profiles") and n != "lb"]
    if published:
        fail("compose", f"only the load balancer is published in the default profile, not {published}")
    for n, s in services.items():
        for v in s.get("volumes", []):
            src = str(v).split(":")[0]
            if src.startswith("./") and not (ROOT / src).exists():
                fail("compose", f"{n}: mounts {src}, which does not exist")
    # nginx upstreams must be compose services, on the port the service listens on.
    conf = (ROOT / "deploy/nginx/nginx.conf").read_text()
    ports = {"chat-api": "8080", "chat-gateway": "3000", "chat-worker": "9090"}
    for host, port in re.findall(r"^\s*server\s+([a-z0-9-]+):(\d+)", conf, re.M):
        s = services.get(host)
        if not s:
            fail("compose", f"nginx.conf: upstream {host} is not a compose service")
        elif ports.get((s.get("command") or [""])[0]) != port:
            fail("compose", f"nginx.conf: upstream {host}:{port} is not the port {host} listens on")
    upstream_hosts = set(re.findall(r"^\s*server\s+([a-z0-9-]+):", conf, re.M))
    missing = set(gateways) - upstream_hosts
    if missing:
        fail("compose", f"nginx.conf: gateways {sorted(missing)} are not upstreams")
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    for job in prom["scrape_configs"]:
        for sc in job.get("static_configs", []):
            for t in sc["targets"]:
                host = t.split(":")[0]
                if host != "localhost" and host not in services:
                    fail("compose", f"prometheus.yml: target {t} is not a compose service")
    for n in ("otel-collector", "jaeger", "prometheus", "grafana"):
        if "observability" not in services.get(n, {}).get("profiles", []):
            fail("compose", f"{n} must be in the `observability` profile")
    print(f"compose: {len(services)} services checked")


# ------------------------------------------------------------------------------------------- metrics

def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bchat_[a-z0-9_]+", expr))


def base_name(name: str, contract: dict[str, tuple[str, str]]) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and contract.get(name[: -len(suffix)], ("", ""))[1] == "histogram":
            return name[: -len(suffix)]
    return name


def check_metrics(dashboard_rules: Path | None) -> None:
    contract: dict[str, tuple[str, str]] = {}
    for line in (ROOT / "scripts/ops/metrics.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            svc, name, kind = line.split()
            contract[name] = (svc, kind)
    dash = json.loads((ROOT / "deploy/grafana/dashboards/chat.json").read_text())
    exprs = []
    uids = set()
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            exprs.append((panel["title"], t["expr"]))
            uids.add(t.get("datasource", {}).get("uid"))
    provisioned = {d["uid"] for d in yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/datasources.yaml").read_text())["datasources"]}
    if not uids <= provisioned:
        fail("metrics", f"the dashboard uses data source uids {sorted(uids - provisioned)} that are not provisioned")
    used = set()
    for title, e in exprs:
        for n in metric_names(e):
            b = base_name(n, contract)
            if b not in contract:
                fail("metrics", f"dashboard panel {title!r} uses {n}, which is not in scripts/ops/metrics.txt")
            used.add(b)
    for name in sorted(set(contract) - used):
        fail("metrics", f"{name} is in scripts/ops/metrics.txt but on no dashboard panel")
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    for g in alerts["groups"]:
        for r in g["rules"]:
            for n in metric_names(r["expr"]):
                if base_name(n, contract) not in contract:
                    fail("metrics", f"alert {r.get('alert')} uses {n}, which is not in scripts/ops/metrics.txt")
    # The services' own definitions.
    notes = []
    for svc in ("api", "gateway", "worker"):
        files = list(ROOT.glob(f"services/{svc}/src/**/*.rs")) + list(ROOT.glob("crates/telemetry/src/**/*.rs"))
        src = "\n".join(p.read_text() for p in files)
        defined = set(re.findall(rf'"(chat_{svc}_[a-z0-9_]+)', src))
        names = [n for n, (s, _) in contract.items() if s == svc]
        if not defined:
            notes.append(f"{svc}: no metrics in its source yet, names not cross-checked")
            continue
        for n in names:
            if n not in src:
                fail("metrics", f"{n} (scripts/ops/metrics.txt) is not defined in services/{svc}/src")
        extra = sorted(d for d in defined if base_name(d, contract) not in contract and not d.endswith("_"))
        if extra:
            notes.append(f"{svc}: defined but on no dashboard: {', '.join(extra)}")
    for n in notes:
        print(f"metrics: note: {n}")
    if dashboard_rules:
        # Every dashboard query as a recording rule, so `promtool check rules` parses the PromQL.
        rules = []
        for i, (title, e) in enumerate(exprs):
            e = e.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
            rules.append({"record": f"dashboard:query_{i}", "expr": e})
        dashboard_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    print(f"metrics: {len(contract)} names, {len(exprs)} dashboard queries checked")


# ---------------------------------------------------------------------------------------------- otel

def check_otel() -> None:
    cfg = yaml.safe_load((ROOT / "deploy/otel-collector/config.yaml").read_text())
    for section, allowed_types in OTEL_CORE.items():
        for comp in cfg.get(section) or {}:
            if comp.split("/")[0] not in allowed_types:
                fail("otel", f"{section}.{comp} is not in the core collector distribution")
    service = cfg.get("service", {})
    for ext in service.get("extensions", []):
        if ext not in (cfg.get("extensions") or {}):
            fail("otel", f"service.extensions uses undefined {ext}")
    pipelines = service.get("pipelines", {})
    if "traces" not in pipelines:
        fail("otel", "no traces pipeline")
    for name, p in pipelines.items():
        for section in ("receivers", "processors", "exporters"):
            for comp in p.get(section, []):
                if comp not in (cfg.get(section) or {}):
                    fail("otel", f"pipeline {name} uses undefined {section[:-1]} {comp}")
        procs = p.get("processors", [])
        if procs and procs[0] != "memory_limiter":
            fail("otel", f"pipeline {name}: memory_limiter must come first")
    print(f"otel: {len(pipelines)} pipelines checked")


# -------------------------------------------------------------------------------------------- docker

def check_docker() -> None:
    import tomllib

    allowed = set()
    for line in (ROOT / "deploy/Dockerfile.dockerignore").read_text().splitlines():
        line = line.strip()
        if line.startswith("!"):
            allowed.add(line[1:].strip("/"))
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]
    needed = {"Cargo.toml": "the workspace manifest", "Cargo.lock": "--locked builds"}
    for member in workspace.get("members", []):
        needed.setdefault(member.split("/")[0], f"workspace member {member}")
    for extra in (".cargo", "rust-toolchain", "rust-toolchain.toml"):
        if (ROOT / extra).exists():
            needed.setdefault(extra, "cargo configuration")
    # Files read at compile time (sqlx::migrate!, include_str!, include_bytes!).
    for rs in list(ROOT.glob("crates/*/src/**/*.rs")) + list(ROOT.glob("services/*/src/**/*.rs")):
        for m in re.finditer(r'(?:migrate|include_str|include_bytes)!\(\s*"([^"]+)"', rs.read_text()):
            base = rs.parent if "include" in m.group(0) else next(p for p in rs.parents if (p / "Cargo.toml").exists())
            target = (base / m.group(1)).resolve()
            try:
                top = target.relative_to(ROOT).parts[0]
            except ValueError:
                fail("docker", f"{rs.relative_to(ROOT)} reads {m.group(1)} outside the repository")
                continue
            needed.setdefault(top, f"{rs.relative_to(ROOT)} reads {m.group(1)} at compile time")
    for top, why in sorted(needed.items()):
        if top not in allowed:
            fail("docker", f"deploy/Dockerfile.dockerignore keeps {top!r} out of the build context, but {why}")
    bins = set()
    for manifest in ROOT.glob("services/*/Cargo.toml"):
        cargo = tomllib.loads(manifest.read_text())
        declared = [b["name"] for b in cargo.get("bin", [])]
        if declared:
            bins.update(declared)
        elif (manifest.parent / "src/main.rs").exists():
            bins.add(cargo["package"]["name"])
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    copied = set(re.search(r"for b in ([^;]+);", dockerfile).group(1).split())
    if copied != set(SERVICES) or not copied <= bins:
        fail("docker", f"the Dockerfile copies {sorted(copied)}; the services' binaries are {sorted(bins)}")
    print(f"docker: build context and binaries checked ({len(needed)} inputs)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rendered", type=Path, required=True)
    ap.add_argument("--dashboard-rules", type=Path)
    args = ap.parse_args()
    rendered = {p.stem: load_all(p) for p in sorted(args.rendered.glob("*.yaml"))}
    if not rendered:
        print(f"no rendered overlays in {args.rendered}", file=sys.stderr)
        return 2
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    check_env(compose, rendered)
    for overlay, objects in rendered.items():
        check_k8s(overlay, objects)
    check_compose(compose)
    check_metrics(args.dashboard_rules)
    check_otel()
    check_docker()
    for e in errors:
        print(f"FAIL {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
