#!/usr/bin/env bash
# Document benchmark (release build, every piece a separate process on this machine):
# upload throughput of 1 x 1 GiB through POST .../documents (direct and through the
# nginx gateway) against a raw multipart upload of the same bytes with the same part size
# and parts in flight (s3-raw-upload) and a raw single PUT (curl), and of 100 x 1 MiB
# against 100 raw PUTs, all to the same S3 server (dev-s3) in the same run; the document
# service's peak RSS (VmHWM) after the 1 GiB uploads and after 8 x 256 MiB at once; 100
# other 1 MiB files 4 at a time, both ways; a
# duplicate 1 GiB upload (one object); GET .../documents (page of 20) with wrk against
# `pgbench -S` on the same machine in the same run. UPLOAD_PART_BYTES and
# UPLOAD_PARTS_IN_FLIGHT (the service's defaults) apply to both sides.
#
#   scripts/bench-documents.sh        (needs curl >= 7.75, wrk, pgbench, nginx; ~12 GiB of disk)
#   BENCH=listing scripts/bench-documents.sh   (only the listing against pgbench)
#   BENCH=uploads scripts/bench-documents.sh   (only the uploads)
#   PROFILE=/tmp/perf.data ...                 (also records a system-wide perf profile
#                                               during the listing)
#   PROFILE_UPLOAD=/tmp/up.data ...            (and one during the first 1 GiB API upload)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
ensure_toolchain
ensure_postgres
ensure_redis
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --workspace --bins >&2
bin="$target_dir/release"
work="$(mktemp -d /var/tmp/bench-docs.XXXXXX)"
psql="$(pg_bin_dir)/psql"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for db in $("$psql" "$PG_SERVER_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'tenant_bench_docs_%' OR datname IN ('bench_docs', 'bench_docs_tpl', 'bench_pgbench')"); do
    "$psql" "$PG_SERVER_URL" -qc "DROP DATABASE \"$db\" WITH (FORCE)" || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

"$psql" "$PG_SERVER_URL" -qc "CREATE DATABASE bench_docs"
export DATABASE_URL="$(database_url_for "$PG_SERVER_URL" bench_docs)" REDIS_URL="$REDIS_SERVER_URL" REDIS_KEY_PREFIX="bench-docs-$$:"
export INTERNAL_SERVICE_TOKEN="bench-internal-token-0123456789abcdef" TENANT_TEMPLATE_DATABASE=bench_docs_tpl
export RUST_LOG=warn HOST=127.0.0.1 BCRYPT_COST=4 JWT_PRIVATE_KEY_FILE="$work/jwt.pem"
export S3_ENDPOINT_URL=http://127.0.0.1:59100 S3_ACCESS_KEY=bench-access S3_SECRET_KEY=bench-secret-0123456789 S3_BUCKET=bench S3_CREATE_BUCKET=true
export MAX_UPLOAD_BYTES=$((2 * 1024 * 1024 * 1024))
export UPLOAD_PART_BYTES="${UPLOAD_PART_BYTES:-8388608}" UPLOAD_PARTS_IN_FLIGHT="${UPLOAD_PARTS_IN_FLIGHT:-3}"
# The services call each other on their internal listeners (INTERNAL_PORT).
export AUTH_SERVICE_URL=http://127.0.0.1:7301 TENANT_SERVICE_URL=http://127.0.0.1:7302
"$bin/auth" generate-key > "$work/jwt.pem"
"$bin/tenant" migrate >/dev/null
"$bin/tenant" migrate-tenants >/dev/null
"$bin/dev-s3" --port 59100 --dir "$work/s3" --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" >/dev/null & pids+=($!)
PORT=6301 INTERNAL_PORT=7301 "$bin/auth" serve & pids+=($!)
PORT=6302 INTERNAL_PORT=7302 "$bin/tenant" serve & pids+=($!)
PORT=6303 INTERNAL_PORT=7303 RUST_LOG=warn,document=info "$bin/document" serve >"$work/document.log" 2>&1 & doc_pid=$!; pids+=($doc_pid)
for port in 6301 6302 6303; do
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.1; done
done
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
curl -fsS -XPOST http://127.0.0.1:6301/api/auth/register -H 'content-type: application/json' \
  -d '{"first_name":"B","last_name":"D","email":"bench@example.com","password":"password1"}' >/dev/null
token=$(curl -fsS -XPOST http://127.0.0.1:6301/api/auth/login -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"password1"}' | json '["access_token"]')
tenant=$(curl -fsS -XPOST http://127.0.0.1:6302/api/tenants -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"name":"Bench Docs"}' | json '["data"]["id"]')
docs="http://127.0.0.1:6303/api/tenants/$tenant/documents"
# Provisioning completes in the background: wait until the tenant is active.
for _ in $(seq 1 100); do
  [ "$(curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:6302/api/tenants/$tenant" | json '["data"]["status"]')" = active ] && break
  sleep 0.1
done

# The gateway (nginx, deploy/gateway/nginx.conf.template) in front of the services.
ensure_nginx
mkdir -p "$work/gateway" && chmod 777 "$work/gateway"
GATEWAY_LISTEN=127.0.0.1:6399 GATEWAY_RUNTIME_DIR="$work/gateway" GATEWAY_STATIC_DIR="$PWD/deploy/gateway/static" \
GATEWAY_MAX_BODY_SIZE="$(( MAX_UPLOAD_BYTES / 1048576 + 1 ))m" GATEWAY_TRUSTED_PROXY=unix: \
GATEWAY_AUTH_RATE=10r/s GATEWAY_AUTH_BURST=50 CORS_ALLOWED_ORIGINS= \
AUTH_UPSTREAM=127.0.0.1:6301 TENANT_UPSTREAM=127.0.0.1:6302 DOCUMENT_UPSTREAM=127.0.0.1:6303 \
SSO_UPSTREAM=127.0.0.1:6304 EVENT_WORKER_UPSTREAM=127.0.0.1:6305 PLATFORM_VERSION=bench \
  python3 deploy/gateway/render.py deploy/gateway/nginx.conf.template "$work/gateway/nginx.conf"
"$(command -v nginx || echo /usr/sbin/nginx)" -p "$work/gateway" -c "$work/gateway/nginx.conf" -e "$work/gateway/error.log" -g 'daemon off;' & pids+=($!)
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:6399/health >/dev/null 2>&1 && break; sleep 0.1; done
gateway_docs="http://127.0.0.1:6399/api/tenants/$tenant/documents"

mkdir -p "$work/small"
for i in $(seq 1 100); do head -c $((1024 * 1024)) /dev/urandom > "$work/small/$i.bin"; done

raw_put() { # file key
  curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T "$1" "$S3_ENDPOINT_URL/$S3_BUCKET/raw/$2" >/dev/null
}
api_put() { # file [documents URL]
  curl -fsS -H "Authorization: Bearer $token" -F "file=@$1" "${2:-$docs}" >/dev/null
}
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1 / ($3 - $2):.1f}')"; }
pct() { python3 -c "print(f'{$1 / $2 * 100:.0f} %')"; }

echo "## Documents ($(date -u +%F), $(nproc) cores)"
echo "document service RSS when started: $(( $(awk '/VmRSS/ {print $2}' "/proc/$doc_pid/status") / 1024 )) MiB"
if [ "${BENCH:-all}" != listing ]; then
  head -c $((1024 * 1024 * 1024)) /dev/urandom > "$work/big.bin"
  # The raw multipart upload (s3-raw-upload: the storage crate's own calls, same part size
  # and parts in flight as the service, nothing else), a raw single PUT (curl), the API
  # direct and the API through the gateway alternate for ROUNDS rounds (3), each after
  # `sync`; medians are compared (the disk here is noisy).
  median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
  multis=(); raws=(); apis=(); gws=()
  delete_last() { # the next round's upload of the same bytes would be deduplicated
    doc_id=$(curl -fsS -H "Authorization: Bearer $token" "$docs?per_page=1" | json '["data"]["documents"][0]["id"]')
    curl -fsS -XDELETE -H "Authorization: Bearer $token" "$docs/$doc_id" >/dev/null
  }
  for round in $(seq 1 "${ROUNDS:-3}"); do
    sync; multis+=("$(PART_BYTES=$UPLOAD_PART_BYTES PARTS_IN_FLIGHT=$UPLOAD_PARTS_IN_FLIGHT "$bin/s3-raw-upload" "$work/big.bin" "raw/multi-$round")")
    sync; a=$(now); raw_put "$work/big.bin" "big-$round"; b=$(now); raws+=("$(python3 -c "print($b - $a)")")
    if [ -n "${PROFILE_UPLOAD:-}" ] && [ "$round" = 1 ]; then  # system-wide perf profile
      sync; a=$(now); perf record -F 499 -g -a -o "$PROFILE_UPLOAD" -- curl -fsS -H "Authorization: Bearer $token" -F "file=@$work/big.bin" "$docs" >/dev/null 2>&1; b=$(now)
    else
      sync; a=$(now); api_put "$work/big.bin"; b=$(now)
    fi
    apis+=("$(python3 -c "print($b - $a)")")
    delete_last
    sync; a=$(now); api_put "$work/big.bin" "$gateway_docs"; b=$(now); gws+=("$(python3 -c "print($b - $a)")")
    delete_last
  done
  t_multi=$(median "${multis[@]}"); t_raw=$(median "${raws[@]}"); t_api=$(median "${apis[@]}"); t_gw=$(median "${gws[@]}")
  peak_big_kib=$(awk '/VmHWM/ {print $2}' "/proc/$doc_pid/status")
  big_phases=$(grep 'upload stored' "$work/document.log" | grep '1073741824' | grep -o '\(receive\|store\)_ms[^ ]*' | sed 's/\x1b\[[0-9;]*m//g' | tr '\n' ' ' || true)

  # A duplicate of a 1 GiB file: stored once, its second upload aborted.
  api_put "$work/big.bin"; api_put "$work/big.bin"
  tenant_dir="$work/s3/$S3_BUCKET/tenants"
  big_objects=$(find "$tenant_dir" -type f -size +1000M | wc -l)
  leftovers=$(find "$work/s3" -maxdepth 1 -name '.upload*' | wc -l)

  # 8 uploads of 256 MiB at once (different bytes): the instance's peak memory.
  for i in $(seq 1 8); do head -c $((256 * 1024 * 1024)) /dev/urandom > "$work/quarter-$i.bin"; done
  sync; a=$(now)
  eight=(); for i in $(seq 1 8); do api_put "$work/quarter-$i.bin" & eight+=($!); done
  for pid in "${eight[@]}"; do wait "$pid"; done
  b=$(now); t_eight=$(python3 -c "print($b - $a)")
  peak_kib=$(awk '/VmHWM/ {print $2}' "/proc/$doc_pid/status")

  t3=$(now); for i in $(seq 1 100); do raw_put "$work/small/$i.bin" "small-$i"; done; t4=$(now)
  for i in $(seq 1 100); do api_put "$work/small/$i.bin"; done; t5=$(now)
  # 100 other files, 4 requests at a time (how uploads arrive in production).
  mkdir -p "$work/small-c"
  for i in $(seq 1 100); do head -c $((1024 * 1024)) /dev/urandom > "$work/small-c/$i.bin"; done
  export -f raw_put api_put; export token docs work
  t6=$(now); seq 1 100 | xargs -P 4 -I{} bash -c 'raw_put "$work/small-c/{}.bin" "small-c-{}"'; t7=$(now)
  seq 1 100 | xargs -P 4 -I{} bash -c 'api_put "$work/small-c/{}.bin"'; t8=$(now)

  echo "| upload | raw | POST .../documents | ratio |"
  echo "|---|---|---|---|"
  multi_big=$(rate 1024 0 "$t_multi"); raw_big=$(rate 1024 0 "$t_raw"); api_big=$(rate 1024 0 "$t_api"); gw_big=$(rate 1024 0 "$t_gw")
  echo "| 1 x 1 GiB, direct, vs raw multipart | $multi_big MiB/s | $api_big MiB/s | $(pct "$api_big" "$multi_big") |"
  echo "| 1 x 1 GiB, through the gateway, vs raw multipart | $multi_big MiB/s | $gw_big MiB/s | $(pct "$gw_big" "$multi_big") |"
  echo "| 1 x 1 GiB, direct, vs raw single PUT | $raw_big MiB/s | $api_big MiB/s | $(pct "$api_big" "$raw_big") |"
  raw_small=$(rate 100 "$t3" "$t4"); api_small=$(rate 100 "$t4" "$t5")
  echo "| 100 x 1 MiB vs raw PUTs | $raw_small files/s | $api_small files/s | $(pct "$api_small" "$raw_small") |"
  raw_conc=$(rate 100 "$t6" "$t7"); api_conc=$(rate 100 "$t7" "$t8")
  echo "| 100 x 1 MiB, 4 at a time, vs raw PUTs | $raw_conc files/s | $api_conc files/s | $(pct "$api_conc" "$raw_conc") |"
  echo "1 GiB, seconds per round: raw multipart ${multis[*]}; raw PUT ${raws[*]}; API ${apis[*]}; API via gateway ${gws[*]}"
  echo "1 GiB upload phases (service log: receive = until the last part is sent, store = completion): $big_phases"
  echo "document service peak RSS (VmHWM) after the 1 GiB uploads: $((peak_big_kib / 1024)) MiB; after 8 x 256 MiB at once ($(python3 -c "print(f'{$t_eight:.1f}')") s): $((peak_kib / 1024)) MiB"
  echo "a 1 GiB file uploaded twice: $big_objects object(s) over 1000 MB under tenants/, $leftovers multipart upload(s) left on S3"
else
  for i in $(seq 1 100); do api_put "$work/small/$i.bin"; done
fi
cp "$work/document.log" /tmp/bench-documents-service.log
[ "${BENCH:-all}" = uploads ] && exit 0
command -v wrk >/dev/null || apt_install wrk
sync  # let the uploads' writeback finish before measuring reads

if [ -n "${PROFILE:-}" ]; then  # perf profile of the document service during the listing
  perf record -F 999 -g -a -o "$PROFILE" -- sleep 9 >/dev/null 2>&1 &
  perf_pid=$!
fi
wrk_out=$(wrk -t2 -c32 -d10s -H "Authorization: Bearer $token" "$docs?per_page=20")
if [ -n "${PROFILE:-}" ]; then wait "$perf_pid" || true; fi
list_rps=$(echo "$wrk_out" | awk '/Requests\/sec/ {print $2}')
non2xx=$(echo "$wrk_out" | awk '/Non-2xx/ {print $NF}')
"$psql" "$PG_SERVER_URL" -qc "CREATE DATABASE bench_pgbench"
pgbench_url="$(database_url_for "$PG_SERVER_URL" bench_pgbench)"
pgbench -q -i -s 10 "$pgbench_url" >/dev/null 2>&1
tps=$(pgbench -S -c 32 -j 2 -T 10 "$pgbench_url" 2>/dev/null | awk '/^tps/ {print $3; exit}')
echo "GET .../documents?per_page=20 (wrk -t2 -c32 -d10s): $list_rps req/s (non-2xx: ${non2xx:-0}); pgbench -S -c32 -j2 -T10: $tps tps; ratio $(pct "$list_rps" "$tps")"
