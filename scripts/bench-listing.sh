#!/usr/bin/env bash
# Listing benchmark as a client sees it: the platform from the release build
# (scripts/dev-up.sh with PROFILE=release: the nginx gateway in front, tansu, s3s-fs),
# one tenant with 100 documents, `GET /api/tenants/{id}/documents?per_page=20` with wrk
# (-t2 -c32 -d10s) through the gateway and straight at the document service, then
# `pgbench -S` (-c32 -j2 -T10) against the same PostgreSQL server; prints the rates and
# the ratios (target: the listing through the gateway >= 25 % of pgbench -S). Then four
# tenants listed at once (wrk -t1 -c8 each through the gateway) with the PostgreSQL
# sessions opened to their databases meanwhile (churn of the shared connection budget).
#
#   scripts/bench-listing.sh                                   (the defaults)
#   HTTP_WORKERS=1 TENANT_POOL_CONNECTIONS_PER_POOL=4 TENANT_POOL_MAX_POOLS=12 \
#     scripts/bench-listing.sh                                 (tuned: any setting the
#                                                               services read passes on)
#
# Needs wrk (installed from Debian when missing); stops the local run at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
command -v wrk >/dev/null || apt_install wrk
ensure_postgres
psql="$(pg_bin_dir)/psql"
pgbench="$(pg_bin_dir)/pgbench"
work="$(mktemp -d)"
cleanup() {
  scripts/dev-down.sh >/dev/null 2>&1 || true
  "$psql" "$PG_SERVER_URL" -qc "DROP DATABASE IF EXISTS bench_listing_pgbench WITH (FORCE)" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Registration and login are rate-limited per address in Redis, which outlives a run.
export REGISTER_RATE_LIMIT_PER_IP="${REGISTER_RATE_LIMIT_PER_IP:-100000/1h}"
export LOGIN_RATE_LIMIT_PER_IP="${LOGIN_RATE_LIMIT_PER_IP:-100000}"
log "starting the platform (release build) with scripts/dev-up.sh"
PROFILE=release scripts/dev-up.sh --detach >"$work/dev-up.log" 2>&1 || { cat "$work/dev-up.log"; exit 1; }
gateway="http://127.0.0.1:${GATEWAY_PORT:-4999}"
document="http://127.0.0.1:5003"

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
email="bench-listing-$(date +%s)@example.com"
curl -fsS -XPOST "$gateway/api/auth/register" -H 'content-type: application/json' \
  -d "{\"first_name\":\"B\",\"last_name\":\"L\",\"email\":\"$email\",\"password\":\"bench password 1\"}" >/dev/null
token=$(curl -fsS -XPOST "$gateway/api/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"bench password 1\"}" | json '["access_token"]')
tenant=$(curl -fsS -XPOST "$gateway/api/tenants" -H "Authorization: Bearer $token" \
  -H 'content-type: application/json' -d '{"name":"Bench Listing"}' | json '["data"]["id"]')
path="/api/tenants/$tenant/documents"
for i in $(seq 1 100); do
  head -c 1024 /dev/urandom > "$work/doc.bin"
  curl -fsS -H "Authorization: Bearer $token" -F "file=@$work/doc.bin;filename=doc-$i.bin" \
    "$gateway$path" >/dev/null
done

listing() { # base URL -> "req/s non-2xx p99"
  local out
  out=$(wrk -t2 -c32 -d10s --latency -H "Authorization: Bearer $token" "$1$path?per_page=20")
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '/Non-2xx/ {print $NF}' | grep . || echo 0) $(echo "$out" | awk '$1 == "99%" {print $2}')"
}
read -r via_gateway gateway_errors gateway_p99 < <(listing "$gateway")
read -r direct direct_errors direct_p99 < <(listing "$document")
# Four busy tenants at once (8 clients each through the gateway): whether they share
# the tenant-connection budget without reconnecting for each other. The sessions
# PostgreSQL opened to their databases during the run show any churn.
paths=("$path")
for t in 2 3 4; do
  id=$(curl -fsS -XPOST "$gateway/api/tenants" -H "Authorization: Bearer $token" \
    -H 'content-type: application/json' -d "{\"name\":\"Bench Listing $t\"}" | json '["data"]["id"]')
  for i in $(seq 1 20); do
    head -c 1024 /dev/urandom > "$work/doc.bin"
    curl -fsS -H "Authorization: Bearer $token" -F "file=@$work/doc.bin;filename=doc-$i.bin" \
      "$gateway/api/tenants/$id/documents" >/dev/null
  done
  paths+=("/api/tenants/$id/documents")
done
sessions() {
  "$psql" "$PG_SERVER_URL" -Atc "SELECT coalesce(sum(sessions), 0) FROM pg_stat_database WHERE datname LIKE 'tenant\_%' AND datname <> 'tenant_template'"
}
sessions_before=$(sessions)
for p in "${paths[@]}"; do
  wrk -t1 -c8 -d10s -H "Authorization: Bearer $token" "$gateway$p?per_page=20" > "$work/wrk-${p//\//_}" 2>&1 &
done
wait
sessions_opened=$(( $(sessions) - sessions_before ))
four_tenants=$(cat "$work"/wrk-* | awk '/Requests\/sec/ {sum += $2} END {printf "%.0f", sum}')
four_errors=$(cat "$work"/wrk-* | awk '/Non-2xx/ {sum += $NF} END {print sum + 0}')

# A failed wrk inside the process substitution escapes set -e: check what it gave.
for rate in "$via_gateway" "$direct"; do
  [[ "$rate" =~ ^[0-9.]+$ ]] || { log "wrk gave no request rate (is the platform up?)"; exit 1; }
done
"$psql" "$PG_SERVER_URL" -qc "DROP DATABASE IF EXISTS bench_listing_pgbench WITH (FORCE)"
"$psql" "$PG_SERVER_URL" -qc "CREATE DATABASE bench_listing_pgbench"
pgbench_url="$(database_url_for "$PG_SERVER_URL" bench_listing_pgbench)"
"$pgbench" -q -i -s 10 "$pgbench_url" >/dev/null 2>&1
tps=$("$pgbench" -S -c 32 -j 2 -T 10 "$pgbench_url" 2>/dev/null | awk '/^tps/ {print $3; exit}')
[[ "$tps" =~ ^[0-9.]+$ ]] || { log "pgbench gave no rate"; exit 1; }
pct() { python3 -c "print(f'{$1 / $2 * 100:.0f} %')"; }

settings=$(env | grep -E '^(HTTP_WORKERS|TENANT_POOL_[A-Z_]*|DATABASE_POOL_SIZE)=' | sort | tr '\n' ' ' || true)
echo "## Listing ($(date -u +%F), $(nproc) cores; settings: ${settings:-the defaults})"
echo "| GET ${path%/*/*}/{id}/documents?per_page=20 | req/s | p99 | non-2xx | / pgbench -S ($tps tps) |"
echo "|---|---|---|---|---|"
echo "| through the gateway | $via_gateway | $gateway_p99 | $gateway_errors | $(pct "$via_gateway" "$tps") |"
echo "| straight to the document service | $direct | $direct_p99 | $direct_errors | $(pct "$direct" "$tps") |"
echo "| four tenants at once through the gateway (4 × 8 clients) | $four_tenants | | $four_errors | $(pct "$four_tenants" "$tps"); $sessions_opened PostgreSQL sessions opened to their databases |"
