#!/usr/bin/env bash
# The soak: the whole platform from the release build (scripts/dev-up.sh with
# PROFILE=release: tansu, s3s-fs, maildev, the gateway) under a mixed fixed-rate load
# (scripts/soak.py) for SOAK_SECS (600), then a report: requests by status (5xx must be
# 0), p50/p99 per route, each service's RSS after the warm-up and at the end, events
# produced vs audited, and the most PostgreSQL connections the platform held; each
# service's RSS is also sampled every minute. Results go in BENCHMARKS.md ("Soak").
# Settings: SOAK_SECS, SOAK_RATE (20 requests/s), SOAK_TENANT_EVERY (15 s),
# SOAK_WARMUP_SECS (60).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
export PROFILE=release SOAK_SECS="${SOAK_SECS:-600}"
warmup="${SOAK_WARMUP_SECS:-60}"
out="$(mktemp -d)"
log "starting the platform (release build) with scripts/dev-up.sh"
scripts/dev-up.sh --detach > "$out/dev-up.log" 2>&1 || { cat "$out/dev-up.log"; exit 1; }
trap 'scripts/dev-down.sh >/dev/null 2>&1 || true' EXIT
ensure_postgres
psql=("$(pg_bin_dir)/psql" -Atq)
main_url="$(database_url_for "$PG_SERVER_URL" saas_platform)"
since="$("${psql[@]}" "$main_url" -c "SELECT now()")"

rss() { # pid -> kB
  awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}
services() { grep -E ' (auth|tenant|document|sso|event-worker)$' .local/run/pids; }

# The platform's connections, every 2 s.
(
  while :; do
    "${psql[@]}" "$PG_SERVER_URL" -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND (datname = 'saas_platform' OR datname LIKE 'tenant\_%')" >> "$out/connections" 2>/dev/null || true
    sleep 2
  done
) &
sampler=$!
# Each service's RSS every minute, to tell a plateau from a leak.
(
  while :; do
    sleep 60
    echo "$(date +%s) $(services | while read -r pid name; do printf '%s=%s ' "$name" "$(rss "$pid")"; done)" >> "$out/rss-series"
  done
) &
series=$!
# RSS after the warm-up.
(
  sleep "$warmup"
  services | while read -r pid name; do echo "$name $(rss "$pid")"; done > "$out/rss-start"
) &

log "load: ${SOAK_RATE:-20} requests/s for $SOAK_SECS s through http://127.0.0.1:4999"
python3 scripts/soak.py > "$out/report.json"
services | while read -r pid name; do echo "$name $(rss "$pid")"; done > "$out/rss-end"
kill "$sampler" "$series" 2>/dev/null || true

# Every event produced during the soak is audited: wait until the outboxes are
# published and the audit log stops growing (2 minutes at most).
databases="$("${psql[@]}" "$PG_SERVER_URL" -c "SELECT datname FROM pg_database WHERE datname = 'saas_platform' OR datname LIKE 'tenant\_%' AND datname <> 'tenant_template'")"
produced=0; audited=-1
for _ in $(seq 1 60); do
  produced=0; pending=0
  for db in $databases; do
    url="$(database_url_for "$PG_SERVER_URL" "$db")"
    n="$("${psql[@]}" "$url" -c "SELECT count(*) FROM outbox WHERE created_at >= '$since'" 2>/dev/null || echo 0)"
    p="$("${psql[@]}" "$url" -c "SELECT count(*) FROM outbox WHERE published_at IS NULL" 2>/dev/null || echo 0)"
    produced=$((produced + n)); pending=$((pending + p))
  done
  audited="$("${psql[@]}" "$main_url" -c "SELECT count(*) FROM audit_logs WHERE occurred_at >= '$since' AND action <> 'dlq.replayed'")"
  [ "$pending" = 0 ] && [ "$audited" -ge "$produced" ] && break
  sleep 2
done

python3 - "$out" "$produced" "$audited" <<'PY'
import json, sys
out, produced, audited = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
report = json.load(open(f"{out}/report.json"))
def rss(name):
    try:
        return {l.split()[0]: int(l.split()[1]) for l in open(f"{out}/{name}") if l.strip()}
    except FileNotFoundError:
        return {}
start, end = rss("rss-start"), rss("rss-end")
connections = [int(l) for l in open(f"{out}/connections") if l.strip().isdigit()] or [0]
print(f"soak: {report['seconds']} s at {report['rate']} requests/s, {report['tenants']} tenants, "
      f"{report['uploads_stored']} uploads stored")
print("requests by status:", json.dumps(report["statuses"], sort_keys=True))
print(f"{'route':<18} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8}  statuses")
for route, r in report["routes"].items():
    print(f"{route:<18} {r['requests']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8}  {json.dumps(r['statuses'], sort_keys=True)}")
print("RSS (MiB) after the warm-up -> at the end:")
for name in ["auth", "tenant", "document", "sso", "event-worker"]:
    a, b = start.get(name, 0), end.get(name, 0)
    growth = f"{(b - a) * 100 / a:+.1f} %" if a else "n/a"
    print(f"  {name:<13} {a / 1024:7.1f} -> {b / 1024:7.1f}  ({growth})")
try:
    series = [l.split() for l in open(f"{out}/rss-series") if l.strip()]
except FileNotFoundError:
    series = []
if series:
    print("RSS (MiB) each minute:")
    names = ["auth", "tenant", "document", "sso", "event-worker"]
    print("  min " + " ".join(f"{n:>12}" for n in names))
    t0 = int(series[0][0]) - 60
    for row in series:
        values = dict(kv.split("=") for kv in row[1:] if "=" in kv)
        print(f"  {(int(row[0]) - t0) // 60:>3} " + " ".join(f"{int(values.get(n, 0)) / 1024:>12.1f}" for n in names))
print(f"events: {produced} produced, {audited} audited")
print(f"webhook deliveries received: {report['webhook_deliveries']} ({report['webhook_ids']} distinct ids)")
print(f"PostgreSQL connections of the platform: at most {max(connections)}")
server_errors = sum(n for s, n in report["statuses"].items() if s.startswith("5"))
ok = server_errors == 0 and produced == audited
print("RESULT:", "pass" if ok else "FAIL", f"({server_errors} 5xx; events {'equal' if produced == audited else 'differ'})")
sys.exit(0 if ok else 1)
PY
