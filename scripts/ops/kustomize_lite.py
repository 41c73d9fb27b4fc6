#!/usr/bin/env python3
"""Renders a kustomization like `kustomize build`, for the subset of kustomize that k8s/ uses.

The fallback of scripts/test.d/15-manifests.sh when neither `kustomize` nor `kubectl` is installed (a
fresh Debian machine has neither, and neither is in Debian's or PyPI's registries in a form worth
trusting). When a real kustomize is present, the test renders with both and requires the same
objects, so this file cannot drift from kustomize unnoticed.

Supported (anything else in a kustomization is refused with an error, never silently ignored):
  resources        files (multi-document YAML) and directories holding a kustomization
  namespace        set on every namespaced object
  labels           `pairs` added to metadata.labels (includeSelectors / includeTemplates: false only)
  images           name -> newName / newTag / digest, in containers and initContainers of pod templates
  replicas         name -> count on Deployments, StatefulSets, ReplicaSets
  patches          JSON 6902 patches (inline `patch:` or `path:`), target by kind / name / namespace

Usage: kustomize_lite.py DIR              prints the rendered YAML stream on stdout
       kustomize_lite.py --compare A B      exit 1 unless two renders hold the same objects
"""

from __future__ import annotations

import copy
import difflib
import re
import sys
from pathlib import Path

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "replicas", "patches"}
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
    "StorageClass", "IngressClass", "PriorityClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "APIService", "RuntimeClass", "CSIDriver", "VolumeAttachment",
}
SCALABLE = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}


class KustomizeError(Exception):
    pass


def load_yaml_stream(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def find_kustomization(directory: Path) -> Path:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (directory / name).is_file():
            return directory / name
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def build(directory: Path) -> list[dict]:
    kfile = find_kustomization(directory)
    k = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(k) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported fields {sorted(unknown)} (extend kustomize_lite.py)")

    objects: list[dict] = []
    for entry in k.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(build(path))
        elif path.is_file():
            objects.extend(load_yaml_stream(path))
        else:
            raise KustomizeError(f"{kfile}: resource {entry!r} not found")

    for p in k.get("patches", []):
        apply_patch(objects, p, directory, kfile)
    if "namespace" in k:
        set_namespace(objects, k["namespace"], kfile)
    for spec in k.get("labels", []):
        add_labels(objects, spec, kfile)
    for img in k.get("images", []):
        set_image(objects, img)
    for r in k.get("replicas", []):
        set_replicas(objects, r, kfile)
    check_unique(objects, kfile)
    return objects


def ident(o: dict) -> tuple:
    md = o.get("metadata", {})
    return (o.get("apiVersion"), o.get("kind"), md.get("namespace"), md.get("name"))


def check_unique(objects: list[dict], kfile: Path) -> None:
    seen = set()
    for o in objects:
        i = ident(o)
        if i in seen:
            raise KustomizeError(f"{kfile}: duplicate object {i}")
        seen.add(i)


def set_namespace(objects: list[dict], ns: str, kfile: Path) -> None:
    for o in objects:
        md = o.setdefault("metadata", {})
        if o.get("kind") == "Namespace":
            if md.get("name") != ns:
                raise KustomizeError(f"{kfile}: Namespace {md.get('name')!r} differs from namespace {ns!r}")
            continue
        if o.get("kind") in CLUSTER_SCOPED:
            continue
        md["namespace"] = ns


def add_labels(objects: list[dict], spec: dict, kfile: Path) -> None:
    extra = set(spec) - {"pairs", "includeSelectors", "includeTemplates"}
    if extra or spec.get("includeSelectors") or spec.get("includeTemplates"):
        raise KustomizeError(f"{kfile}: labels: only `pairs` without selectors/templates is supported")
    for o in objects:
        o.setdefault("metadata", {}).setdefault("labels", {}).update(spec.get("pairs", {}))


def pod_specs(o: dict):
    kind = o.get("kind")
    spec = o.get("spec", {})
    if kind == "Pod":
        yield spec
    elif kind == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    elif "template" in spec:
        yield spec["template"].get("spec", {})


def split_image(image: str) -> tuple[str, str | None, str | None]:
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        image, tag = image.rsplit(":", 1)
    return image, tag, digest


def set_image(objects: list[dict], img: dict) -> None:
    for o in objects:
        for ps in pod_specs(o):
            for c in ps.get("containers", []) + ps.get("initContainers", []):
                name, tag, digest = split_image(c.get("image", ""))
                if name != img["name"]:
                    continue
                name = img.get("newName", name)
                if "digest" in img:
                    c["image"] = f"{name}@{img['digest']}"
                elif "newTag" in img:
                    c["image"] = f"{name}:{img['newTag']}"
                else:
                    c["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def set_replicas(objects: list[dict], r: dict, kfile: Path) -> None:
    hit = False
    for o in objects:
        if o.get("kind") in SCALABLE and o.get("metadata", {}).get("name") == r["name"]:
            o.setdefault("spec", {})["replicas"] = r["count"]
            hit = True
    if not hit:
        raise KustomizeError(f"{kfile}: replicas: no workload named {r['name']!r}")


def matches(o: dict, target: dict) -> bool:
    md = o.get("metadata", {})
    for key, actual in (("kind", o.get("kind")), ("name", md.get("name")), ("namespace", md.get("namespace"))):
        want = target.get(key)
        if want is not None and not re.fullmatch(want, actual or ""):
            return False
    api = o.get("apiVersion", "")
    group, _, version = api.rpartition("/")
    if target.get("group") is not None and target["group"] != group:
        return False
    if target.get("version") is not None and target["version"] != version:
        return False
    return True


def apply_patch(objects: list[dict], p: dict, directory: Path, kfile: Path) -> None:
    if set(p) - {"target", "patch", "path"} or "target" not in p:
        raise KustomizeError(f"{kfile}: patches need a `target` and one of `patch`/`path` ({p})")
    target = p["target"]
    if set(target) - {"kind", "name", "namespace", "group", "version"}:
        raise KustomizeError(f"{kfile}: unsupported patch target fields in {target}")
    text = p["patch"] if "patch" in p else (directory / p["path"]).read_text()
    ops = yaml.safe_load(text)
    if not isinstance(ops, list):
        raise KustomizeError(f"{kfile}: only JSON 6902 patches (a list of operations) are supported")
    hit = False
    for i, o in enumerate(objects):
        if matches(o, target):
            objects[i] = json_patch(o, ops, kfile)
            hit = True
    if not hit:
        raise KustomizeError(f"{kfile}: patch target {target} matches nothing")


def pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KustomizeError(f"bad JSON pointer {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def json_patch(doc: dict, ops: list[dict], kfile: Path) -> dict:
    doc = copy.deepcopy(doc)
    for op in ops:
        tokens = pointer(op["path"])
        if not tokens:
            raise KustomizeError(f"{kfile}: patching the whole document is not supported")
        parent = doc
        for t in tokens[:-1]:
            parent = parent[int(t)] if isinstance(parent, list) else parent[t]
        last = tokens[-1]
        kind = op["op"]
        try:
            if kind in ("add", "replace"):
                value = copy.deepcopy(op["value"])
                if isinstance(parent, list):
                    if last == "-":
                        parent.append(value)
                    elif kind == "add":
                        parent.insert(int(last), value)
                    else:
                        parent[int(last)] = value
                else:
                    if kind == "replace" and last not in parent:
                        raise KeyError(last)
                    parent[last] = value
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind == "test":
                actual = parent[int(last)] if isinstance(parent, list) else parent[last]
                if actual != op["value"]:
                    raise KustomizeError(f"{kfile}: test failed at {op['path']}")
            else:
                raise KustomizeError(f"{kfile}: unsupported JSON patch op {kind!r}")
        except (KeyError, IndexError, ValueError) as e:
            raise KustomizeError(f"{kfile}: {kind} {op['path']}: no such location ({e})") from None
    return doc


def compare(a: Path, b: Path) -> int:
    """Same objects (by apiVersion, kind, namespace, name) with equal content, in any order."""
    left = {ident(o): o for o in load_yaml_stream(a)}
    right = {ident(o): o for o in load_yaml_stream(b)}
    problems = [f"only in {a}: {i}" for i in sorted(set(left) - set(right), key=str)]
    problems += [f"only in {b}: {i}" for i in sorted(set(right) - set(left), key=str)]
    for i in sorted(set(left) & set(right), key=str):
        if left[i] != right[i]:
            diff = difflib.unified_diff(
                yaml.safe_dump(left[i], sort_keys=True).splitlines(),
                yaml.safe_dump(right[i], sort_keys=True).splitlines(), str(a), str(b), lineterm="")
            problems.append(f"{i} differs:\n" + "\n".join(diff))
    for p in problems:
        print(f"kustomize_lite: {p}", file=sys.stderr)
    return 1 if problems else 0


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        return compare(Path(sys.argv[2]), Path(sys.argv[3]))
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        objects = build(Path(sys.argv[1]))
    except KustomizeError as e:
        print(f"kustomize_lite: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(objects, sys.stdout, sort_keys=True, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
