#!/usr/bin/env bash
# Checks the alert rules and the Grafana dashboard: promtool validates deploy/prometheus
# (syntax, then the unit tests of alerts.test.yml), and every query of
# deploy/grafana/*.json is checked by promtool as a recording rule (PromQL syntax) and
# must use only metrics the code exports (names listed below, kept next to the code
# that registers them: http-kit's metrics.rs and events' metrics.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
promtool="$(ensure_promtool)"
"$promtool" check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && "$promtool" test rules alerts.test.yml)
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
python3 - "$out/dashboard-rules.yml" <<'PY'
import glob, json, re, sys
exported = set()
for path in ["crates/http-kit/src/metrics.rs", "crates/events/src/metrics.rs"]:
    exported |= set(re.findall(r'"((?:http|events|kafka)_[a-z_]+)"', open(path).read()))
# Histograms export these series.
for name in list(exported):
    if name.endswith("_seconds") and name.startswith("http_"):
        exported |= {name + "_bucket", name + "_sum", name + "_count"}
rules, problems = [], []
for path in sorted(glob.glob("deploy/grafana/*.json")):
    dashboard = json.load(open(path))
    panels = dashboard["panels"]
    assert panels, f"{path}: no panels"
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name in re.findall(r"\b((?:http|events|kafka)_[a-z_]+)\b", expr):
                if name not in exported:
                    problems.append(f"{path}: panel {panel['title']!r} uses {name}, which nothing exports")
            # Grafana's interval variables are not PromQL.
            promql = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            rules.append({"record": f"dashboard:check:{len(rules)}", "expr": promql})
if problems:
    sys.exit("\n".join(problems))
# promtool checks the expressions' syntax as recording rules.
with open(sys.argv[1], "w") as f:
    json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
print(f"{len(rules)} dashboard queries use exported metrics")
PY
"$promtool" check rules "$out/dashboard-rules.yml"
