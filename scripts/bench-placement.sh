#!/usr/bin/env bash
# Times the query tenant placement runs inside every tenant creation (the servers
# with their tenant counts, services/tenant/src/store/servers.rs) on TENANTS tenant
# rows (default 3000) over two servers, a tenth of them deactivated: a scratch main
# database with the real migrations, the query as the code sends it (its SQL is read
# from the source), RUNS times (default 20); prints min, median and max in ms.
# Needs PostgreSQL (the machine's, or TEST_DATABASE_URL) and the diesel CLI
# (scripts/check-schema.sh installs it). BENCHMARKS.md, "Placement".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
if [ -n "${TEST_DATABASE_URL:-}" ]; then PG_SERVER_URL="$TEST_DATABASE_URL"; fi
ensure_postgres
psql_bin="$(pg_bin_dir)/psql"
tenants="${TENANTS:-3000}"
runs="${RUNS:-20}"
db="placement_bench_$$"
"$psql_bin" "$PG_SERVER_URL" -qc "CREATE DATABASE $db"
trap '"$psql_bin" "$PG_SERVER_URL" -qc "DROP DATABASE IF EXISTS $db"' EXIT
url="$(database_url_for "$PG_SERVER_URL" "$db")"
config="$(mktemp --suffix=.toml)"
diesel migration run --config-file "$config" --database-url "$url" --migration-dir migrations/main >/dev/null
rm -f "$config"
# The query as the code builds it: SELECT_WITH_COUNTS + " GROUP BY s.id ORDER BY s.name".
query="$(python3 - <<'PY'
import re
src = open("services/tenant/src/store/servers.rs").read()
body = re.search(r'const SELECT_WITH_COUNTS: &str = "\\\n(.*?)";', src, re.S).group(1)
sql = " ".join(part.strip().rstrip("\\").strip() for part in body.splitlines())
print(sql + " GROUP BY s.id ORDER BY s.name")
PY
)"
"$psql_bin" "$url" -q <<SQL
INSERT INTO database_servers (id, name, admin_url_ref, url_ref, weight)
VALUES ('00000000-0000-0000-0000-000000000002', 'second', 'SECOND_ADMIN_URL', 'SECOND_URL', 50);
INSERT INTO tenants (id, name, database_name, status, is_active, server_id)
SELECT gen_random_uuid(), 't' || i, 'tenant_t' || i || '_' || lpad(to_hex(i), 8, '0'),
       CASE WHEN i % 10 = 0 THEN 'deleted' ELSE 'active' END, i % 10 <> 0,
       CASE WHEN i % 3 = 0 THEN '00000000-0000-0000-0000-000000000002'::uuid
            ELSE '00000000-0000-0000-0000-000000000001'::uuid END
FROM generate_series(1, $tenants) i;
ANALYZE tenants;
SQL
python3 - "$psql_bin" "$url" "$runs" "$query" <<'PY'
import re, statistics, subprocess, sys
psql, url, runs, query = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
times = []
for _ in range(runs):
    out = subprocess.run([psql, url, "-Atc", "EXPLAIN (ANALYZE, FORMAT TEXT) " + query],
                         check=True, capture_output=True, text=True).stdout
    times.append(float(re.search(r"Execution Time: ([0-9.]+) ms", out).group(1)))
print(f"placement query over {query.count('JOIN')} joins, {runs} runs: "
      f"min {min(times):.2f} ms, median {statistics.median(times):.2f} ms, max {max(times):.2f} ms")
PY
