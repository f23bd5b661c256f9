#!/usr/bin/env bash
# Runs every test of the workspace against real PostgreSQL and Redis (and nginx for the
# gateway, installed from Debian when missing; Node.js for the SSO tests' OpenID Connect
# provider, whose npm packages the tests install from the committed lock; Debian's
# Chromium and ChromeDriver for the browser check of CORS; schemathesis and
# openapi-spec-validator from PyPI for the contract lane; the Kafka-protocol broker
# tansu from crates.io, built once per machine, about 20 minutes the first time): the ones given
# by TEST_DATABASE_URL / TEST_REDIS_URL, else those on this machine, else private ones
# it starts (see scripts/lib/services.sh). Extra arguments go to cargo nextest.
#
#   PGBOUNCER=1 scripts/test.sh -p platform-tests   the services' request traffic
#     through a transaction-mode PgBouncer (built once per machine) in front of that
#     PostgreSQL, their administration and migrations straight to it
#     (TEST_DATABASE_POOLER; k8s/README.md, "PostgreSQL connections and PgBouncer")
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
ensure_toolchain

ensure_build_deps || log "OpenSSL's headers are missing: the build will fail"
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

if [ -n "${TEST_DATABASE_URL:-}" ]; then PG_SERVER_URL="$TEST_DATABASE_URL"; fi
if [ -n "${TEST_REDIS_URL:-}" ]; then REDIS_SERVER_URL="$TEST_REDIS_URL"; fi
ensure_postgres
ensure_redis
ensure_nginx || log "nginx is missing: the gateway test will fail"
ensure_node || log "the SSO tests will fail"
ensure_chromium || log "Chromium is missing: the browser check will fail"
ensure_python_tools || log "schemathesis is missing: the contract tests will fail"
TANSU_BIN="$(ensure_tansu)" || log "tansu is missing: the Kafka tests will fail"
export TANSU_BIN
export TEST_DATABASE_URL="$PG_SERVER_URL" TEST_REDIS_URL="$REDIS_SERVER_URL"
log "tests use PostgreSQL at ${TEST_DATABASE_URL%%\?*} and Redis at $TEST_REDIS_URL"

# The whole workspace unless packages are named (cargo runs every package when both
# --workspace and -p are given).
scope=(--workspace)
for arg in "$@"; do
  case "$arg" in -p|--package|-p*|--package=*) scope=() ;; esac
done

if [ "${PGBOUNCER:-0}" = 1 ]; then
  pooler_dir="$(mktemp -d)"
  pooler_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  pooler_pid="$(start_pgbouncer "$pooler_dir" "$pooler_port" "$pooler_dir/pgbouncer.log")"
  # SIGINT: stop without waiting for clients (SIGTERM would wait for a leaked one).
  trap 'kill -INT "$pooler_pid" 2>/dev/null; sleep 1; kill -KILL "$pooler_pid" 2>/dev/null; rm -rf "$pooler_dir"' EXIT
  export TEST_DATABASE_POOLER="127.0.0.1:$pooler_port"
  log "the services' request traffic goes through PgBouncer at $TEST_DATABASE_POOLER"
  cargo nextest run "${scope[@]}" "$@"
else
  exec cargo nextest run "${scope[@]}" "$@"
fi
