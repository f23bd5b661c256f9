#!/usr/bin/env bash
# Renders k8s/overlays/dev and k8s/overlays/prod (scripts/render-k8s.py, no network),
# validates every object with `kubernetes-validate --strict` (installed from PyPI when
# missing), and checks what the overlays must change.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
if ! command -v kubernetes-validate >/dev/null; then
  log "installing kubernetes-validate from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
fi
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pyyaml
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for overlay in dev prod; do
  python3 scripts/render-k8s.py "k8s/overlays/$overlay" > "$out/$overlay.yaml"
  kubernetes-validate --strict --quiet "$out/$overlay.yaml"
  python3 - "$out/$overlay.yaml" "$overlay" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
overlay = sys.argv[2]
kinds = {}
for d in docs:
    kinds.setdefault(d["kind"], set()).add(d["metadata"]["name"])
    assert d["metadata"].get("namespace") == f"saas-{overlay}", d["metadata"]
services = {"auth", "tenant", "document", "sso", "event-worker"}
for kind in ["Deployment", "Service", "PodDisruptionBudget"]:
    assert services | {"gateway"} <= kinds.get(kind, set()), (kind, kinds.get(kind))
assert services <= kinds["HorizontalPodAutoscaler"], kinds["HorizontalPodAutoscaler"]
assert "migrate" in kinds["Job"] and kinds.get("Ingress") and kinds.get("NetworkPolicy")
for d in docs:
    if d["kind"] != "Deployment":
        continue
    pod = d["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"], d["metadata"]["name"]
    for c in pod["containers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"], c["name"]
        assert c.get("readinessProbe") and c.get("livenessProbe") and c.get("resources"), c["name"]
        if d["metadata"]["name"] in services:
            assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
            assert c["livenessProbe"]["httpGet"]["path"] == "/health"
            assert c["image"].endswith(":dev" if overlay == "dev" else ":0.1.0"), c["image"]
            assert not any(e.get("value", "").startswith("postgres") for e in c.get("env", [])), "secrets as files"
print(f"k8s/overlays/{overlay}: {len(docs)} objects valid")
PY
done
# Every placeholder of the gateway template is set for the gateway in k8s and compose
# (envsubst leaves an unset one in place and nginx refuses the file at start).
python3 - "$out/prod.yaml" <<'PY'
import re, sys, yaml
names = set(re.findall(r"\$\{([A-Z0-9_]+)\}", open("deploy/gateway/nginx.conf.template").read()))
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
gateway = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gateway")
k8s = {e["name"] for c in gateway["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
compose = set(yaml.safe_load(open("docker-compose.yml"))["services"]["gateway"]["environment"])
for where, have in [("k8s gateway", k8s), ("docker-compose gateway", compose)]:
    missing = sorted(names - have)
    assert not missing, f"{where} lacks {missing}"
print(f"gateway template: {len(names)} placeholders set in k8s and docker-compose")
PY
