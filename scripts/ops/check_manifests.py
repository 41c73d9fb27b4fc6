#!/usr/bin/env python3
"""Consistency checks of the deployment files that no schema can express.

Run by scripts/test.d/15-manifests.sh after the schema checks, with the rendered Kubernetes overlays:
    check_manifests.py --rendered DIR [--dashboard-rules OUT.yml] [--merged-compose OUT.yml]
DIR holds one <overlay>.yaml per overlay (the output of `kustomize build k8s/overlays/<overlay>`).
The Compose forms are docker-compose.yml alone ("compose", one Redis) and docker-compose.yml with the
override deploy/compose/cluster.yml ("compose+cluster", a Redis Cluster), merged as Compose merges them
(--merged-compose writes that merge, for the schema check).

Checks:
  env        every variable the services read (crates/config, any env::var in the services and crates,
             the gateway's settings, OTEL_*, RUST_LOG) is documented in README.md or docs/OPERATIONS.md
             and set in both Compose forms and in every overlay for each service that reads it, unless
             scripts/ops/env-allowlist.txt says why not (and the allow-list has no stale entries); its
             target `single` covers only the single-Redis forms, so a Redis Cluster form must set it
  k8s        security contexts, resources and probes of every workload (the chat services', and in
             production overlays their dependencies' too), graceful shutdown of the gateway, and that
             the objects refer to each other correctly (Services, Ingress backends, HPAs, PDBs,
             ConfigMaps/Secrets, images pinned in production overlays); NetworkPolicies let the
             services reach the in-overlay Redis and MySQL
  redis      every Redis runs with AOF (everysec) and noeviction; a Redis Cluster form (compose+cluster,
             an overlay with a cluster-enabled StatefulSet) has nodes that announce their DNS names, a
             bootstrap that creates the cluster only once, REDIS_CLUSTER_NODES naming exactly its nodes,
             REDIS_WAIT_REPLICAS between 1 and the replicas per master, SHARDS >= the masters, and its
             nodes can reach each other on the cluster bus; a single-Redis form without replicas
             waits for none (REDIS_WAIT_REPLICAS=0)
  compose    the load balancer's upstreams and mounts, Prometheus targets, dependencies, in both forms
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


ALLOW_TARGETS = ("compose", "k8s", "all", "single")


def load_allowlist() -> dict[tuple[str, str], str]:
    out = {}
    for line in (ROOT / "scripts/ops/env-allowlist.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3 or parts[1] not in ALLOW_TARGETS:
            fail("env", f"env-allowlist.txt: malformed line {line!r} (VARIABLE {'|'.join(ALLOW_TARGETS)} reason)")
            continue
        out[(parts[0], parts[1])] = parts[2]
    return out


def covers(entry: str, kind: str, mode: str) -> bool:
    """Whether an allow-list target covers a deployment target of this kind (compose, k8s) and Redis mode."""
    return entry in ("all", kind) or (entry == "single" and mode == "single")


def allowed(allow: dict, var: str, kind: str, mode: str) -> bool:
    return any(v == var and covers(entry, kind, mode) for v, entry in allow)


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


def env_dict(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, dict):
        return {k: "" if v is None else str(v) for k, v in env.items()}
    return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)


def app_services(compose: dict) -> dict[str, dict]:
    """The compose services running chat-api, chat-gateway or chat-worker (migrate excluded)."""
    return {n: s for n, s in compose["services"].items()
            if (s.get("command") or [None])[0] in SERVICES and len(s["command"]) == 1}


# Compose's merge of several files (https://docs.docker.com/reference/compose-file/merge/), for what
# the checks read: mappings merge key by key, these attributes are replaced, other sequences append
# (without duplicates); environment, depends_on and the like merge as mappings in either syntax.
COMPOSE_REPLACED = {"command", "entrypoint", "test"}
COMPOSE_MAPPINGS = {"environment", "labels", "depends_on", "extra_hosts", "sysctls", "ulimits"}


def as_mapping(key: str, v):
    if isinstance(v, dict) or not isinstance(v, list):
        return v
    if key == "depends_on":
        return {x: {"condition": "service_started"} for x in v}
    return dict(str(e).split("=", 1) if "=" in str(e) else (str(e), None) for e in v)


def merge_compose(base, over, key: str = ""):
    if key in COMPOSE_MAPPINGS:
        base, over = as_mapping(key, base), as_mapping(key, over)
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge_compose(base[k], v, k) if k in base else v
        return out
    if isinstance(base, list) and isinstance(over, list) and key not in COMPOSE_REPLACED:
        return base + [x for x in over if x not in base]
    return over


def compose_forms() -> dict[str, dict]:
    """Compose form -> its application model: docker-compose.yml alone, and with each override."""
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    forms = {"compose": base}
    override = ROOT / "deploy/compose/cluster.yml"
    if override.exists():
        forms["compose+cluster"] = merge_compose(base, yaml.safe_load(override.read_text()))
    return forms


def k8s_envs(objects: list[dict], overlay: str) -> dict[str, set[str]]:
    """Service binary -> the variables its Deployment's container gets, per overlay."""
    configmaps = {o["metadata"]["name"]: set(o.get("data", {})) for o in objects if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"]: set(o.get("stringData", {})) | set(o.get("data", {}))
               for o in objects if o["kind"] == "Secret"}
    # The Secret created out of band: its example, in the overlay or an overlay it builds on.
    for directory in overlay_chain(ROOT / "k8s/overlays" / overlay):
        example = directory / "secret.example.yaml"
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


def overlay_chain(directory: Path) -> list[Path]:
    """An overlay's directory and those of the overlays it builds on (its resources under k8s/overlays)."""
    out = [directory]
    k = directory / "kustomization.yaml"
    for entry in (yaml.safe_load(k.read_text()) or {}).get("resources", []) if k.exists() else []:
        path = (directory / entry).resolve()
        if path.is_dir() and path.parent == (ROOT / "k8s/overlays").resolve():
            out += overlay_chain(path)
    return out


def check_env(forms: dict[str, dict], rendered: dict[str, list[dict]]) -> None:
    read = variables_read()
    allow = load_allowlist()
    docs = (ROOT / "README.md").read_text()
    ops = ROOT / "docs/OPERATIONS.md"
    docs += ops.read_text() if ops.exists() else ""
    # target -> (kind, Redis mode, service -> the variables it gets)
    targets = {}
    for name, compose in forms.items():
        targets[name] = ("compose", compose_redis_mode(compose), compose_envs(compose))
    for overlay, objects in rendered.items():
        targets[f"k8s/{overlay}"] = ("k8s", k8s_redis_mode(objects), k8s_envs(objects, overlay))
    for var, where in sorted(read.items()):
        if f"`{var}`" not in docs:
            fail("env", f"{var} (read by {where}) is documented in neither README.md nor docs/OPERATIONS.md")
        for target, (kind, mode, envs) in targets.items():
            if allowed(allow, var, kind, mode):
                continue
            for svc in owners(var):
                if var not in envs.get(svc, set()):
                    fail("env", f"{var} (read by {where}) is not set for {svc} in {target} "
                                f"(set it, or allow-list it with a reason in scripts/ops/env-allowlist.txt)")
    for (var, entry), _ in allow.items():
        if var not in read:
            fail("env", f"env-allowlist.txt: {var} is not read by any service; remove it")
            continue
        for target, (kind, mode, envs) in targets.items():
            if not covers(entry, kind, mode):
                continue
            if all(var in envs.get(svc, set()) for svc in owners(var)):
                fail("env", f"env-allowlist.txt: {var} is set in {target} after all; remove the entry")
    modes = ", ".join(f"{t} ({m})" for t, (_, m, _) in targets.items())
    print(f"env: {len(read)} variables checked against the docs and {modes}")


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

    # Production overlays (APP_ENV=production) hold their dependencies (e.g. a Redis Cluster) to the
    # chat services' standard; a development overlay's MySQL and Redis get the basic checks only.
    production = cm.get("APP_ENV") == "production"
    pss = next((o["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce")
                for o in objects if o["kind"] == "Namespace"), None)
    for o, tpl in pod_templates(objects):
        name = f"{overlay}: {o['kind']} {o['metadata']['name']}"
        spec = tpl["spec"]
        if pss in ("baseline", "restricted"):
            for key in ("hostNetwork", "hostPID", "hostIPC"):
                if spec.get(key):
                    fail("k8s", f"{name}: {key} violates the namespace's {pss} Pod Security Standard")
            for v in spec.get("volumes", []):
                if "hostPath" in v:
                    fail("k8s", f"{name}: hostPath volume {v['name']!r} violates the {pss} Pod Security Standard")
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                if c.get("securityContext", {}).get("privileged"):
                    fail("k8s", f"{name} container {c['name']}: privileged violates the {pss} Pod Security Standard")
        # the chat services, and in production overlays their dependencies too, to the full standard
        check_workload(name, o, spec, full=is_chat(tpl) or production, production=production)

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
    for name, sts in by_kind.get("StatefulSet", {}).items():
        if sts["spec"].get("serviceName") not in by_kind.get("Service", {}):
            fail("k8s", f"{overlay}: StatefulSet {name} names a missing Service {sts['spec'].get('serviceName')!r}")
    if "Job" not in by_kind or "chat-migrate" not in by_kind["Job"]:
        fail("k8s", f"{overlay}: the migration Job chat-migrate is missing")
    # The chat services reach the in-overlay databases (Redis 6379, MySQL 3306) through the policies.
    policies = list(by_kind.get("NetworkPolicy", {}).values())
    for dep, dtpl in ((o, t) for o, t in pod_templates(objects) if o["kind"] == "StatefulSet" and not is_chat(t)):
        ports = {p["containerPort"] for c in dtpl["spec"]["containers"] for p in c.get("ports", [])} & {6379, 3306}
        for port in sorted(ports):
            for name in deployments:
                if not network_allows(policies, templates[name], dtpl["metadata"].get("labels", {}), port):
                    fail("k8s", f"{overlay}: the NetworkPolicies keep {name} from {dep['metadata']['name']}:{port}")
    print(f"k8s/{overlay}: {len(objects)} objects, {len(deployments)} Deployments, "
          f"{len(by_kind.get('StatefulSet', {}))} StatefulSets checked")


def pinned(image: str) -> bool:
    return "@sha256:" in image or (":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"))


def check_workload(name: str, o: dict, spec: dict, full: bool, production: bool) -> None:
    """Security contexts, resources, probes and images of one workload. `full`: the chat services, and
    every workload of a production overlay; otherwise (a development overlay's MySQL and Redis) a
    writable root filesystem, no CPU limit and no liveness probe are let through."""
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
        if full and sc.get("readOnlyRootFilesystem") is not True:
            fail("k8s", f"{cname}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            fail("k8s", f"{cname}: allowPrivilegeEscalation must be false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            fail("k8s", f"{cname}: capabilities must drop ALL")
        res = c.get("resources", {})
        need = [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")] + ([("limits", "cpu")] if full else [])
        for part, k in need:
            if k not in res.get(part, {}):
                fail("k8s", f"{cname}: resources.{part}.{k} is not set")
        if production and not pinned(c.get("image", "")):
            fail("k8s", f"{cname}: production images must carry a pinned tag, got {c.get('image')!r}")
        if o["kind"] in ("Deployment", "StatefulSet") and c in spec.get("containers", []):
            for probe in ("readinessProbe", "livenessProbe") if full else ("readinessProbe",):
                if probe not in c:
                    fail("k8s", f"{cname}: {probe} is missing")


def label_match(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against a pod's labels; {} matches all."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        has, val = e["key"] in labels, labels.get(e["key"])
        op = e["operator"]
        if (op == "In" and val not in e["values"]) or (op == "NotIn" and has and val in e["values"]) \
                or (op == "Exists" and not has) or (op == "DoesNotExist" and has):
            return False
    return True


def network_allows(policies: list[dict], src: dict, dst: dict, port: int) -> bool:
    """Whether the NetworkPolicies of one namespace let a pod labelled src open TCP `port` on a pod
    labelled dst in the same namespace. Peers given by namespaceSelector or ipBlock are taken not to
    match (the check cannot know the namespace's labels or the pods' addresses)."""
    def types(p):
        spec = p["spec"]
        return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))

    def port_ok(rule):
        for p in rule.get("ports") or [{}]:
            if p.get("protocol", "TCP") != "TCP":
                continue
            lo = p.get("port")
            if lo is None or (isinstance(lo, int) and lo <= port <= p.get("endPort", lo)):
                return True
        return False

    def peer_ok(rule, key, labels):
        peers = rule.get(key)
        if not peers:
            return True
        return any("podSelector" in peer and "namespaceSelector" not in peer and label_match(peer["podSelector"], labels)
                   for peer in peers)

    for direction, me, other, key in (("Ingress", dst, src, "from"), ("Egress", src, dst, "to")):
        mine = [p for p in policies if direction in types(p) and label_match(p["spec"]["podSelector"], me)]
        if mine and not any(peer_ok(r, key, other) and port_ok(r)
                            for p in mine for r in p["spec"].get(direction.lower()) or []):
            return False
    return True


# ------------------------------------------------------------------------------------------- compose

def check_compose(form: str, compose: dict) -> None:
    def fail(_group: str, msg: str) -> None:  # every message names the form
        errors.append(f"{form}: {msg}")

    services = compose["services"]
    if not redis_servers(compose):
        fail("compose", "no Redis server (a service whose command is redis-server)")
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
    for n, s in services.items():
        deps = as_mapping("depends_on", s.get("depends_on") or {})
        for d in deps:
            if d not in services:
                fail("compose", f"{n} depends on {d}, which is not a service")
    print(f"{form}: {len(services)} services checked")


# --------------------------------------------------------------------------------------------- redis

PERSISTENCE = ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction")
CLUSTER_FLAGS = ("--cluster-enabled yes", "--cluster-preferred-endpoint-type hostname")


def words(cmd) -> str:
    return " ".join(str(x) for x in (cmd or []))


def flag(cmd: str, name: str) -> str | None:
    m = re.search(rf"(?:^|\s){re.escape(name)}\s+(\S+)", cmd)
    return m.group(1) if m else None


def redis_servers(compose: dict) -> dict[str, str]:
    """Compose service -> its redis-server command line."""
    return {n: words(s.get("command")) for n, s in compose["services"].items()
            if (s.get("command") or [None])[0] == "redis-server"}


def compose_redis_mode(compose: dict) -> str:
    if any(flag(c, "--cluster-enabled") == "yes" for c in redis_servers(compose).values()):
        return "cluster"
    for s in app_services(compose).values():
        env = env_dict(s)
        if env.get("REDIS_CLUSTER_NODES", "").strip() or env.get("REDIS_URL", "").startswith("redis+cluster://"):
            return "cluster"
    return "single"


def redis_statefulsets(objects: list[dict]) -> dict[str, tuple[dict, str]]:
    """StatefulSet -> (it, the command line of its Redis container)."""
    out = {}
    for o in objects:
        if o["kind"] != "StatefulSet":
            continue
        for c in o["spec"]["template"]["spec"]["containers"]:
            if re.split(r"[:@]", c.get("image", "").split("/")[-1])[0] == "redis":
                out[o["metadata"]["name"]] = (o, words((c.get("command") or []) + (c.get("args") or [])))
    return out


def k8s_redis_mode(objects: list[dict]) -> str:
    if any(flag(cmd, "--cluster-enabled") == "yes" for _, cmd in redis_statefulsets(objects).values()):
        return "cluster"
    cm = next((o.get("data", {}) for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "chat-config"), {})
    return "cluster" if cm.get("REDIS_CLUSTER_NODES", "").strip() else "single"


def check_wait(target: str, env: dict[str, str], replicas_per_master: int, masters: int | None) -> None:
    """REDIS_WAIT_REPLICAS against the replicas the form runs; SHARDS against the masters."""
    wait = env.get("REDIS_WAIT_REPLICAS")
    if wait is None or not wait.isdigit():
        fail("redis", f"{target}: REDIS_WAIT_REPLICAS must be set to a number, got {wait!r}")
        return
    if int(wait) > replicas_per_master:
        fail("redis", f"{target}: REDIS_WAIT_REPLICAS={wait}, but the form runs {replicas_per_master} replica(s) "
                      f"per master: every WAIT would time out and every send answer NOT_REPLICATED")
    if masters is not None:
        if int(wait) < 1:
            fail("redis", f"{target}: a Redis Cluster needs REDIS_WAIT_REPLICAS >= 1, or a fail-over loses acked messages")
        shards = int(env.get("SHARDS", "16"))
        if shards < masters:
            fail("redis", f"{target}: SHARDS={shards} leaves some of the {masters} masters without a stream")


def check_redis_compose(form: str, compose: dict) -> None:
    services = compose["services"]
    servers = redis_servers(compose)
    for n, cmd in servers.items():
        for need in PERSISTENCE:
            if need not in cmd:
                fail("redis", f"{form}: {n} must run with {need} (acked messages live in the stream until the worker writes them)")
    apps = app_services(compose)
    nodes = {n: c for n, c in servers.items() if flag(c, "--cluster-enabled") == "yes"}
    if compose_redis_mode(compose) == "single":
        for n, s in apps.items():
            replicas = sum(1 for c in servers.values() if flag(c, "--replicaof"))
            check_wait(f"{form} {n}", env_dict(s), replicas, None)
        return
    if not nodes:
        return  # a cluster outside Compose: nothing to compare with
    for n, cmd in nodes.items():
        for need in CLUSTER_FLAGS:
            if need not in cmd:
                fail("redis", f"{form}: cluster node {n} must run with {need}")
        if flag(cmd, "--cluster-announce-hostname") != n:
            fail("redis", f"{form}: cluster node {n} must announce its service name (--cluster-announce-hostname {n})")
        if not any(str(v).split(":")[1:2] == ["/data"] for v in services[n].get("volumes", [])):
            fail("redis", f"{form}: cluster node {n} needs a volume on /data (AOF and nodes.conf)")
    inits = {n: words(s.get("command")) for n, s in services.items() if "--cluster create" in words(s.get("command"))}
    if len(inits) != 1:
        fail("redis", f"{form}: one service must create the cluster (redis-cli --cluster create), found {sorted(inits)}")
        return
    init, script = next(iter(inits.items()))
    replicas = check_bootstrap(form, init, script)
    deps = as_mapping("depends_on", services[init].get("depends_on") or {})
    for n in nodes:
        if deps.get(n, {}).get("condition") != "service_healthy":
            fail("redis", f"{form}: {init} must wait for {n} (depends_on condition service_healthy)")
    masters = len(nodes) // (replicas + 1)
    want = {f"{n}:6379" for n in nodes}
    for n, s in apps.items():
        env = env_dict(s)
        deps = as_mapping("depends_on", s.get("depends_on") or {})
        if deps.get(init, {}).get("condition") != "service_completed_successfully":
            fail("redis", f"{form}: {n} must start after {init} (depends_on condition service_completed_successfully)")
        got = {x.strip() for x in env.get("REDIS_CLUSTER_NODES", "").split(",") if x.strip()}
        if got != want:
            fail("redis", f"{form}: {n}: REDIS_CLUSTER_NODES must name the nodes {sorted(want)}, got {sorted(got)}")
        check_wait(f"{form} {n}", env, replicas, masters)
    print(f"redis: {form}: {len(nodes)} cluster nodes, {masters} masters, created by {init}")


def check_bootstrap(where: str, name: str, script: str) -> int:
    """The cluster's creation script (Compose service or Job): replicas per master, and idempotent."""
    replicas = int(flag(script, "--cluster-replicas") or 0)
    if replicas < 1:
        fail("redis", f"{where}: {name} must create the cluster with --cluster-replicas >= 1")
    if "cluster_state" not in script:
        fail("redis", f"{where}: {name} must skip the creation when cluster_state is already ok")
    return replicas


def check_redis_k8s(overlay: str, objects: list[dict]) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for o in objects:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    cm = by_kind.get("ConfigMap", {}).get("chat-config", {}).get("data", {})
    sets = redis_statefulsets(objects)
    for name, (_, cmd) in sets.items():
        for need in PERSISTENCE:
            if need not in cmd:
                fail("redis", f"k8s/{overlay}: StatefulSet {name} must run with {need}")
    clusters = {n: v for n, v in sets.items() if flag(v[1], "--cluster-enabled") == "yes"}
    if k8s_redis_mode(objects) == "single":
        if sets:  # an in-overlay Redis: WAIT for no more replicas than it has
            replicas = sum(1 for _, cmd in sets.values() if flag(cmd, "--replicaof"))
            check_wait(f"k8s/{overlay}", cm, replicas, None)
        return
    if not clusters:
        return  # an external cluster
    policies = list(by_kind.get("NetworkPolicy", {}).values())
    templates = {o["metadata"]["name"]: t["metadata"].get("labels", {}) for o, t in pod_templates(objects)}
    want: set[str] = set()
    for name, (sts, cmd) in clusters.items():
        for need in CLUSTER_FLAGS:
            if need not in cmd:
                fail("redis", f"k8s/{overlay}: StatefulSet {name} must run with {need}")
        svc = sts["spec"].get("serviceName", "")
        ns = sts["metadata"].get("namespace", "default")
        announce = flag(cmd, "--cluster-announce-hostname") or ""
        if announce not in (f"$(POD_NAME).{svc}.$(POD_NAMESPACE).svc.cluster.local", f"$(POD_NAME).{svc}.{ns}.svc.cluster.local"):
            fail("redis", f"k8s/{overlay}: {name} must announce its pod's DNS name "
                          f"($(POD_NAME).{svc}.$(POD_NAMESPACE).svc.cluster.local), got {announce!r}")
        n = sts["spec"].get("replicas", 1)
        want |= {f"{name}-{i}.{svc}.{ns}.svc.cluster.local:6379" for i in range(n)}
        if not any(label_match(p["spec"]["selector"], templates[name]) for p in by_kind.get("PodDisruptionBudget", {}).values()):
            fail("redis", f"k8s/{overlay}: no PodDisruptionBudget selects {name}")
        if not sts["spec"].get("volumeClaimTemplates"):
            fail("redis", f"k8s/{overlay}: {name} needs a volumeClaimTemplate (AOF and nodes.conf)")
        headless = by_kind.get("Service", {}).get(svc, {"spec": {}})
        if headless["spec"].get("clusterIP") != "None":
            fail("redis", f"k8s/{overlay}: {name} needs a headless Service {svc!r} (a DNS name per node)")
        if not headless["spec"].get("publishNotReadyAddresses"):
            fail("redis", f"k8s/{overlay}: Service {svc} must publishNotReadyAddresses (the nodes must resolve before the cluster exists)")
        labels = templates[name]
        for port in (6379, 16379):
            if not network_allows(policies, labels, labels, port):
                fail("redis", f"k8s/{overlay}: the NetworkPolicies keep the {name} nodes from each other on {port}")
        for d in (d for d in by_kind.get("Deployment", {}) if d.startswith("chat-")):
            if not network_allows(policies, templates[d], labels, 6379):
                fail("redis", f"k8s/{overlay}: the NetworkPolicies keep {d} from {name}:6379")
        # The bootstrap: a Job whose command (or a ConfigMap it mounts) runs `redis-cli --cluster create`.
        jobs = {}
        for jname, job in by_kind.get("Job", {}).items():
            spec = job["spec"]["template"]["spec"]
            text = " ".join(words((c.get("command") or []) + (c.get("args") or [])) for c in spec["containers"])
            for v in spec.get("volumes", []):
                if "configMap" in v:
                    text += " " + " ".join(by_kind.get("ConfigMap", {}).get(v["configMap"]["name"], {}).get("data", {}).values())
            if "--cluster create" in text:
                jobs[jname] = text
        if len(jobs) != 1:
            fail("redis", f"k8s/{overlay}: one Job must create the cluster (redis-cli --cluster create), found {sorted(jobs)}")
            continue
        jname, script = next(iter(jobs.items()))
        replicas = check_bootstrap(f"k8s/{overlay}", jname, script)
        if not network_allows(policies, templates[jname], labels, 6379):
            fail("redis", f"k8s/{overlay}: the NetworkPolicies keep {jname} from {name}:6379")
        masters = n // (replicas + 1)
        check_wait(f"k8s/{overlay}", cm, replicas, masters)
        print(f"redis: k8s/{overlay}: {name}, {n} nodes, {masters} masters, created by Job {jname}")
    got = {x.strip() for x in cm.get("REDIS_CLUSTER_NODES", "").split(",") if x.strip()}
    if got != want:
        fail("redis", f"k8s/{overlay}: REDIS_CLUSTER_NODES in chat-config must name the nodes {sorted(want)}, got {sorted(got)}")


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
    ap.add_argument("--merged-compose", type=Path, help="write docker-compose.yml + deploy/compose/cluster.yml, merged")
    args = ap.parse_args()
    rendered = {p.stem: load_all(p) for p in sorted(args.rendered.glob("*.yaml"))}
    if not rendered:
        print(f"no rendered overlays in {args.rendered}", file=sys.stderr)
        return 2
    forms = compose_forms()
    if args.merged_compose and "compose+cluster" in forms:
        args.merged_compose.write_text(yaml.safe_dump(forms["compose+cluster"], sort_keys=False))
    check_env(forms, rendered)
    for overlay, objects in rendered.items():
        check_k8s(overlay, objects)
        check_redis_k8s(overlay, objects)
    for form, compose in forms.items():
        check_compose(form, compose)
        check_redis_compose(form, compose)
    check_metrics(args.dashboard_rules)
    check_otel()
    check_docker()
    for e in errors:
        print(f"FAIL {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
