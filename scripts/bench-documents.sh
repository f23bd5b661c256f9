#!/usr/bin/env bash
# Document benchmark (release build, every piece a separate process on this machine):
# upload throughput of 1 x 1 GiB and 100 x 1 MiB through POST .../documents against a
# raw signed PUT of the same bytes to the same S3 server (dev-s3) in the same run; the
# document service's peak RSS (VmHWM) during the 1 GiB upload; GET .../documents (page
# of 20) with wrk against `pgbench -S` on the same machine in the same run.
#
#   scripts/bench-documents.sh        (needs curl >= 7.75, wrk, pgbench; ~3 GiB of disk)
#   BENCH=listing scripts/bench-documents.sh   (only the listing against pgbench)
#   PROFILE=/tmp/perf.data ...                 (also records a system-wide perf profile
#                                               during the listing)
#   PROFILE_UPLOAD=/tmp/up.data ...            (and one during the first 1 GiB API upload)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
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
export DATABASE_URL="$(database_url_for "$PG_SERVER_URL" bench_docs)" REDIS_URL="$REDIS_SERVER_URL" REDIS_KEY_PREFIX="bench-docs:"
export INTERNAL_SERVICE_TOKEN="bench-internal-token-0123456789abcdef" TENANT_TEMPLATE_DATABASE=bench_docs_tpl
export RUST_LOG=warn HOST=127.0.0.1 BCRYPT_COST=4 JWT_PRIVATE_KEY_FILE="$work/jwt.pem"
export S3_ENDPOINT_URL=http://127.0.0.1:59100 S3_ACCESS_KEY=bench-access S3_SECRET_KEY=bench-secret-0123456789 S3_BUCKET=bench S3_CREATE_BUCKET=true
export MAX_UPLOAD_BYTES=$((2 * 1024 * 1024 * 1024)) UPLOAD_DIR="${BENCH_UPLOAD_DIR:-$work}"
export AUTH_SERVICE_URL=http://127.0.0.1:6301 TENANT_SERVICE_URL=http://127.0.0.1:6302
"$bin/auth" generate-key > "$work/jwt.pem"
"$bin/tenant" migrate >/dev/null
"$bin/tenant" migrate-tenants >/dev/null
"$bin/dev-s3" --port 59100 --dir "$work/s3" --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" >/dev/null & pids+=($!)
PORT=6301 "$bin/auth" serve & pids+=($!)
PORT=6302 "$bin/tenant" serve & pids+=($!)
PORT=6303 RUST_LOG=warn,document=info "$bin/document" serve >"$work/document.log" 2>&1 & doc_pid=$!; pids+=($doc_pid)
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

mkdir -p "$work/small"
for i in $(seq 1 100); do head -c $((1024 * 1024)) /dev/urandom > "$work/small/$i.bin"; done

raw_put() { # file key
  curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T "$1" "$S3_ENDPOINT_URL/$S3_BUCKET/raw/$2" >/dev/null
}
api_put() { # file
  curl -fsS -H "Authorization: Bearer $token" -F "file=@$1" "$docs" >/dev/null
}
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1 / ($3 - $2):.1f}')"; }
pct() { python3 -c "print(f'{$1 / $2 * 100:.0f} %')"; }

echo "## Documents ($(date -u +%F), $(nproc) cores)"
if [ "${BENCH:-all}" = all ]; then
  head -c $((1024 * 1024 * 1024)) /dev/urandom > "$work/big.bin"
  # The object key holds the MD5, so no byte can go to S3 before the last one has been
  # hashed: the upload's floor is one MD5 pass plus one PUT. md5sum times that pass.
  # The disk here is noisy (the same PUT took 2.7 s and 5.7 s in a row), so the raw PUT
  # and the API upload alternate for ROUNDS rounds (3) and the medians are compared;
  # each starts with no dirty pages left by the previous one.
  median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
  md5s=(); raws=(); apis=()
  for round in $(seq 1 "${ROUNDS:-3}"); do
    sync; a=$(now); md5sum "$work/big.bin" >/dev/null; b=$(now); md5s+=("$(python3 -c "print($b - $a)")")
    sync; a=$(now); raw_put "$work/big.bin" "big-$round"; b=$(now); raws+=("$(python3 -c "print($b - $a)")")
    if [ -n "${PROFILE_UPLOAD:-}" ] && [ "$round" = 1 ]; then  # system-wide perf profile
      sync; a=$(now); perf record -F 499 -g -a -o "$PROFILE_UPLOAD" -- curl -fsS -H "Authorization: Bearer $token" -F "file=@$work/big.bin" "$docs" >/dev/null 2>&1; b=$(now)
    else
      sync; a=$(now); api_put "$work/big.bin"; b=$(now)
    fi
    apis+=("$(python3 -c "print($b - $a)")")
    # The next round's upload of the same bytes would be deduplicated: remove it.
    doc_id=$(curl -fsS -H "Authorization: Bearer $token" "$docs?per_page=1" | json '["data"]["documents"][0]["id"]')
    curl -fsS -XDELETE -H "Authorization: Bearer $token" "$docs/$doc_id" >/dev/null
  done
  t_md5=$(median "${md5s[@]}"); t_raw=$(median "${raws[@]}"); t_api=$(median "${apis[@]}")
  peak_kib=$(awk '/VmHWM/ {print $2}' "/proc/$doc_pid/status")
  big_phases=$(grep 'upload stored' "$work/document.log" | grep '1073741824' | grep -o '\(receive\|store\)_ms[^ ]*' | sed 's/\x1b\[[0-9;]*m//g' | tr '\n' ' ' || true)
  t3=$(now); for i in $(seq 1 100); do raw_put "$work/small/$i.bin" "small-$i"; done; t4=$(now)
  for i in $(seq 1 100); do api_put "$work/small/$i.bin"; done; t5=$(now)

  echo "| upload | raw PUT to S3 | POST .../documents | ratio |"
  echo "|---|---|---|---|"
  raw_big=$(rate 1024 0 "$t_raw"); api_big=$(rate 1024 0 "$t_api")
  echo "| 1 x 1 GiB | $raw_big MiB/s | $api_big MiB/s | $(pct "$api_big" "$raw_big") |"
  raw_small=$(rate 100 "$t3" "$t4"); api_small=$(rate 100 "$t4" "$t5")
  echo "| 100 x 1 MiB | $raw_small files/s | $api_small files/s | $(pct "$api_small" "$raw_small") |"
  echo "1 GiB, seconds per round: md5sum ${md5s[*]}; raw PUT ${raws[*]}; API ${apis[*]}"
  echo "hash-then-PUT ceiling (raw PUT / (raw PUT + md5sum), medians): $(pct "$t_raw" "($t_raw + $t_md5)")"
  echo "1 GiB upload phases (service log, each round): $big_phases"
  echo "document service peak RSS (VmHWM) after the uploads: $((peak_kib / 1024)) MiB"
else
  for i in $(seq 1 100); do api_put "$work/small/$i.bin"; done
fi
cp "$work/document.log" /tmp/bench-documents-service.log
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
