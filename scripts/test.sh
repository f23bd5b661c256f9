#!/usr/bin/env bash
# Runs every test of the workspace against real PostgreSQL and Redis (and nginx for the
# gateway, installed from Debian when missing; Node.js for the SSO tests' OpenID Connect
# provider, whose npm packages the tests install from the committed lock; Debian's
# Chromium and ChromeDriver for the browser check of CORS; schemathesis and
# openapi-spec-validator from PyPI for the contract lane; the Kafka-protocol broker
# tansu from crates.io, built once per machine, about 20 minutes the first time): the ones given
# by TEST_DATABASE_URL / TEST_REDIS_URL, else those on this machine, else private ones
# it starts (see scripts/lib/services.sh). Extra arguments go to cargo nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

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

exec cargo nextest run --workspace "$@"
