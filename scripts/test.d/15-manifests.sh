#!/usr/bin/env bash
# The deployment files, checked without a Docker engine or a cluster (docs/OPERATIONS.md, "Checks"):
#  - the Kubernetes overlays rendered (kustomize, `kubectl kustomize`, or scripts/ops/kustomize_lite.py
#    when neither is installed; with a real kustomize, the two renders must agree) and every object
#    validated against the Kubernetes 1.31 and newest bundled API schemas (kubernetes-validate --strict)
#  - YAML linted (yamllint, relaxed), docker-compose.yml and the Redis Cluster override
#    deploy/compose/cluster.yml (alone and merged with it) validated against the Compose spec schema
#  - nginx.conf tested by nginx itself, the Prometheus config, alert rules and every dashboard query
#    parsed by promtool (both from Debian's packages, unpacked under target/, not installed)
#  - scripts/ops/check_manifests.py: environment variables documented and set everywhere, security
#    contexts, probes, graceful shutdown, references between objects, Redis persistence and the Redis
#    Cluster forms, metric names, collector pipelines
# Python tools are pinned and installed into a venv under target/. Takes ~15 s once they are there.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS

if ! command -v python3 >/dev/null 2>&1; then
  echo "15-manifests: python3 is missing; skipped" >&2
  exit 77
fi
OPS=${CARGO_TARGET_DIR:-$PWD/target}/ops
mkdir -p "$OPS"

# --- Python tools ---------------------------------------------------------------------------------
REQS="kubernetes-validate==1.37.0 check-jsonschema==0.39.0 yamllint==1.38.0 PyYAML==6.0.3"
VENV=$OPS/venv
if [ "$(cat "$VENV/.reqs" 2>/dev/null)" != "$REQS" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086 # one word per requirement
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQS
  echo "$REQS" >"$VENV/.reqs"
fi
PY=$VENV/bin/python

# --- nginx and promtool, unpacked from Debian's packages -------------------------------------------
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
deb_tool() { # package, path of the binary inside it; prints the binary's path, or nothing
  local pkg=$1 bin=$2 dir=$OPS/deb/$1
  if [ ! -x "$dir$bin" ] && command -v apt-get >/dev/null 2>&1; then
    mkdir -p "$OPS/deb"
    (
      cd "$OPS/deb"
      rm -f "${pkg}"_*.deb
      apt-get download "$pkg" >/dev/null 2>&1 ||
        { $SUDO apt-get update -qq >/dev/null 2>&1 && apt-get download "$pkg" >/dev/null 2>&1; } || exit 0
      rm -rf "$dir" && dpkg-deb -x "${pkg}"_*.deb "$dir"
    )
  fi
  if [ -x "$dir$bin" ]; then echo "$dir$bin"; fi
}
NGINX=$(deb_tool nginx /usr/sbin/nginx)
PROMTOOL=$(deb_tool prometheus /usr/bin/promtool)

# --- render the overlays ---------------------------------------------------------------------------
RENDERED=$OPS/rendered
rm -rf "$RENDERED"
mkdir -p "$RENDERED/lite"
# Only kustomize v5 (kubectl >= 1.27 embeds it): older ones lack the `labels` field used here.
if command -v kustomize >/dev/null 2>&1 && kustomize version 2>/dev/null | grep -q 'v5\.'; then
  KUSTOMIZE=(kustomize build)
elif command -v kubectl >/dev/null 2>&1 && kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v5\.'; then
  KUSTOMIZE=(kubectl kustomize)
else
  KUSTOMIZE=()
fi
for dir in k8s/overlays/*/; do
  overlay=$(basename "$dir")
  "$PY" scripts/ops/kustomize_lite.py "$dir" >"$RENDERED/lite/$overlay.yaml"
  if [ ${#KUSTOMIZE[@]} -gt 0 ]; then
    "${KUSTOMIZE[@]}" "$dir" >"$RENDERED/$overlay.yaml"
    "$PY" scripts/ops/kustomize_lite.py --compare "$RENDERED/$overlay.yaml" "$RENDERED/lite/$overlay.yaml"
  else
    cp "$RENDERED/lite/$overlay.yaml" "$RENDERED/$overlay.yaml"
  fi
done
echo "rendered k8s/overlays/{$(cd k8s/overlays && ls | paste -sd,)} with ${KUSTOMIZE[*]:-scripts/ops/kustomize_lite.py}"

# --- schemas and linters ---------------------------------------------------------------------------
for version in 1.31.0 1.37.0; do
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$RENDERED"/*.yaml
  echo "kubernetes-validate --strict $version: ok ($(cat "$RENDERED"/*.yaml | grep -c '^kind:') objects)"
done
"$VENV/bin/yamllint" --strict -c scripts/ops/yamllint.yaml k8s deploy docker-compose.yml
echo "yamllint: ok"
# The Redis Cluster override on its own (an override may be partial), and merged below.
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml deploy/compose/cluster.yml

if [ -n "$NGINX" ]; then
  # nginx resolves upstream names when it loads its configuration: point them at loopback for the test.
  mkdir -p "$OPS/nginx"
  sed -E 's/^(\s*server\s+)[a-z0-9.-]+:/\1127.0.0.1:/' deploy/nginx/nginx.conf >"$OPS/nginx/nginx.conf"
  "$NGINX" -t -q -p "$OPS/nginx" -c "$OPS/nginx/nginx.conf" -e stderr
  echo "nginx -t: ok ($("$NGINX" -v 2>&1 | sed 's/.*\///'))"
else
  echo "15-manifests: no apt-get here: nginx -t and promtool were not run" >&2
fi

# --- consistency -----------------------------------------------------------------------------------
"$PY" scripts/ops/check_manifests.py --rendered "$RENDERED" --dashboard-rules "$OPS/dashboard-rules.yml" \
  --merged-compose "$OPS/compose-cluster.yml"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$OPS/compose-cluster.yml"
echo "compose-spec: docker-compose.yml + deploy/compose/cluster.yml, merged: ok"

if [ -n "$PROMTOOL" ]; then
  "$PROMTOOL" check config deploy/prometheus/prometheus.yml >/dev/null
  "$PROMTOOL" check rules deploy/prometheus/alerts.yml "$OPS/dashboard-rules.yml" >/dev/null
  (cd scripts/ops && "$PROMTOOL" test rules alerts-test.yml)
  echo "promtool: config, alert rules, dashboard queries and alert tests ok"
fi

echo "15-manifests: passed in $((SECONDS - started)) s"
