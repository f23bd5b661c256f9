#!/usr/bin/env bash
# Brings the whole platform up locally: PostgreSQL and Redis (DATABASE_URL / REDIS_URL
# when given; otherwise the machine's, or private ones started from the machine's
# binaries, installed from Debian's packages when missing and permitted), Kafka
# (KAFKA_BROKERS, else tansu, built once per machine, with its storage in .local/tansu;
# KAFKA=mock: librdkafka's mock cluster, dev-kafka), S3 (S3_ENDPOINT_URL, else
# s3s-fs: dev-s3), a mail catcher (SMTP_URL, else maildev on 1025, its UI on 1080),
# builds the services, runs the migrations, starts the five services on
# 127.0.0.1:5001-5005 (internal listeners 6001-6005) and the nginx gateway on 127.0.0.1:4999 (GATEWAY_PORT), and makes
# an admin and a test tenant (tenant init). PGBOUNCER=1 puts PgBouncer (transaction
# mode, built once per machine) between that PostgreSQL and the services' request traffic.
#
#   scripts/dev-up.sh            run in the foreground; Ctrl-C stops the services
#   scripts/dev-up.sh --detach   leave them running; scripts/dev-down.sh stops them
#   SERVICES="auth tenant" scripts/dev-up.sh   only some services
#   PROFILE=release scripts/dev-up.sh          optimised build
#   KAFKA=mock scripts/dev-up.sh               no tansu: librdkafka's mock cluster
#   PGBOUNCER=1 scripts/dev-up.sh              request traffic through PgBouncer on
#                                              127.0.0.1:6432 (PGBOUNCER_PORT)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
ensure_toolchain

detach=false
[ "${1:-}" = "--detach" ] && detach=true

declare -A PORTS=([auth]=5001 [tenant]=5002 [document]=5003 [sso]=5004 [event-worker]=5005)
SERVICES="${SERVICES:-auth tenant document sso event-worker}"
PROFILE="${PROFILE:-dev}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
bin_dir="$target_dir/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
run_dir="$PWD/.local/run"
mkdir -p "$run_dir/logs"

if [ -f "$run_dir/pids" ] || [ -f "$run_dir/pgbouncer/pgbouncer.pid" ]; then
  log "stopping services left from an earlier run"
  scripts/dev-down.sh >/dev/null 2>&1 || true
fi

pgbouncer="${PGBOUNCER:-0}"
case "$pgbouncer" in 0|1) ;; *) log "PGBOUNCER must be 0 or 1, not $pgbouncer"; exit 1 ;; esac
# PgBouncer fronts the server this script finds or starts, reached without a password
# (trust), so it can authenticate nobody itself and forward every database name.
if [ "$pgbouncer" = 1 ] && [ -n "${DATABASE_URL:-}" ]; then
  log "PGBOUNCER=1 fronts the PostgreSQL this script finds or starts: unset DATABASE_URL"; exit 1
fi
if [ -z "${DATABASE_URL:-}" ]; then
  ensure_postgres
  DATABASE_URL="$(database_url_for "$PG_SERVER_URL" saas_platform)"
  psql_bin="$(pg_bin_dir)/psql"
  if [ "$("$psql_bin" "$PG_SERVER_URL" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'saas_platform'")" != 1 ]; then
    "$psql_bin" "$PG_SERVER_URL" -qc 'CREATE DATABASE saas_platform'
    log "created database saas_platform"
  fi
fi
if [ -z "${REDIS_URL:-}" ]; then
  ensure_redis
  REDIS_URL="$REDIS_SERVER_URL"
fi
export DATABASE_URL REDIS_URL
export HOST="${HOST:-127.0.0.1}" ENVIRONMENT="${ENVIRONMENT:-development}" RUST_LOG="${RUST_LOG:-info}"
# The services listen on 127.0.0.1 behind the gateway (public listeners on PORT, the
# internal API on INTERNAL_PORT = PORT + 1000, where they call each other): the client
# address (rate limits, the session list) is the X-Forwarded-For entry the gateway
# appends from 127.0.0.1.
export TRUSTED_PROXIES="${TRUSTED_PROXIES:-127.0.0.1}"

ensure_build_deps || { log "OpenSSL's headers (libssl-dev) and pkg-config are needed to build"; exit 1; }
log "building the services ($PROFILE profile)"
cargo build --profile "$PROFILE" --workspace --bins

# Development secrets, made once and kept in .local/run (never committed).
if [ -z "${JWT_PRIVATE_KEY:-}${JWT_PRIVATE_KEY_FILE:-}" ]; then
  [ -s "$run_dir/jwt-private-key.pem" ] || "$bin_dir/auth" generate-key > "$run_dir/jwt-private-key.pem"
  chmod 600 "$run_dir/jwt-private-key.pem"
  export JWT_PRIVATE_KEY_FILE="$run_dir/jwt-private-key.pem"
fi
if [ -z "${INTERNAL_SERVICE_TOKEN:-}${INTERNAL_SERVICE_TOKEN_FILE:-}" ]; then
  [ -s "$run_dir/internal-service-token" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$run_dir/internal-service-token"
  chmod 600 "$run_dir/internal-service-token"
  export INTERNAL_SERVICE_TOKEN_FILE="$run_dir/internal-service-token"
fi

# The keyring of auth, tenant, sso and the event-worker (client secrets, Azure tokens and
# webhook secrets at rest; emailed links, invitations too, on their way to the mailer).
if [ -z "${SECRETS_KEYRING:-}${SECRETS_KEYRING_FILE:-}" ]; then
  [ -s "$run_dir/secrets-keyring" ] || printf 'dev1=%s' "$(head -c 32 /dev/urandom | base64 -w0)" > "$run_dir/secrets-keyring"
  chmod 600 "$run_dir/secrets-keyring"
  export SECRETS_KEYRING_FILE="$run_dir/secrets-keyring"
fi

# Object storage for the document service: S3_ENDPOINT_URL when given, else a local
# S3 server (s3s-fs, built with the workspace) on 59000 with data in .local/s3.
if [ -z "${S3_ENDPOINT_URL:-}" ]; then
  export S3_ENDPOINT_URL="http://127.0.0.1:59000" S3_ACCESS_KEY="dev-access" S3_SECRET_KEY="dev-secret-key-0123456789"
  export S3_CREATE_BUCKET=true
  "$bin_dir/dev-s3" --port 59000 --dir "$PWD/.local/s3" --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" \
    >"$run_dir/logs/dev-s3.log" 2>&1 &
  echo "$! dev-s3" >> "$run_dir/pids.servers"
fi

# Kafka: KAFKA_BROKERS when given; else a tansu broker (a Kafka-protocol broker built
# once per machine by ensure_tansu, about 20 minutes the first time) on 127.0.0.1:59092
# with its SQLite storage in .local/tansu, so events not yet consumed survive a restart;
# KAFKA=mock uses librdkafka's in-process mock cluster (dev-kafka) instead, which keeps
# nothing. Either way `event-worker topics ensure` then makes the topic catalog.
if [ -z "${KAFKA_BROKERS:-}" ]; then
  if [ "${KAFKA:-tansu}" = mock ]; then
    topics=""
    for t in tenant.created tenant.deleted user.registered membership.changed \
             document.uploaded document.deleted file.process audit.events user.account \
             tenant.invitation; do
      topics="$topics$t,$t.dlq,"
    done
    rm -f "$run_dir/kafka-brokers"
    "$bin_dir/dev-kafka" --topics "$topics" --write-to "$run_dir/kafka-brokers" \
      >"$run_dir/logs/dev-kafka.log" 2>&1 &
    echo "$! dev-kafka" >> "$run_dir/pids.servers"
    for _ in $(seq 1 100); do [ -s "$run_dir/kafka-brokers" ] && break; sleep 0.1; done
    [ -s "$run_dir/kafka-brokers" ] || { log "dev-kafka did not start: $(cat "$run_dir/logs/dev-kafka.log")"; exit 1; }
    KAFKA_BROKERS="$(cat "$run_dir/kafka-brokers")"
  else
    tansu_bin="$(ensure_tansu)" || { log "tansu could not be built: KAFKA=mock runs on librdkafka's mock cluster instead"; exit 1; }
    tansu_port="${TANSU_PORT:-59092}"
    mkdir -p "$PWD/.local/tansu"
    # tansu joins even an absolute sqlite:/// path to its working directory: it runs
    # in its data folder with a relative one. Its log at warn (TANSU_LOG): at the
    # services' info it logs every request, and the consumers' fetches alone made it
    # write some 30 MB/s and take more than one of two cores while the platform idled.
    (cd "$PWD/.local/tansu" && RUST_LOG="${TANSU_LOG:-warn}" exec "$tansu_bin" broker \
      --listener-url "tcp://127.0.0.1:$tansu_port" \
      --advertised-listener-url "tcp://127.0.0.1:$tansu_port" \
      --storage-engine "sqlite://tansu.db") >"$run_dir/logs/tansu.log" 2>&1 &
    echo "$! tansu" >> "$run_dir/pids.servers"
    for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$tansu_port") 2>/dev/null && break; sleep 0.1; done
    (exec 3<>"/dev/tcp/127.0.0.1/$tansu_port") 2>/dev/null \
      || { log "tansu did not listen on 127.0.0.1:$tansu_port: $(tail -n 20 "$run_dir/logs/tansu.log")"; exit 1; }
    KAFKA_BROKERS="127.0.0.1:$tansu_port"
    # tansu 0.6 crashes on an idempotent produce after a producer-epoch bump (what a
    # broker restart under traffic causes): docs/DESIGN-NOTES.md, "Kafka on tansu".
    export KAFKA_IDEMPOTENCE="${KAFKA_IDEMPOTENCE:-false}"
  fi
fi
export KAFKA_BROKERS
log "making the Kafka topics on $KAFKA_BROKERS"
if ! "$bin_dir/event-worker" topics ensure >"$run_dir/logs/topics.log" 2>&1; then
  log "event-worker topics ensure failed: $(cat "$run_dir/logs/topics.log")"; exit 1
fi
grep -E '^(DRIFT|[0-9]+ topics)' "$run_dir/logs/topics.log" >&2 || true

# Email: SMTP_URL when given, else the mail catcher maildev (npm, installed once into
# $(state_dir)/maildev): SMTP on 127.0.0.1:1025, its web UI and REST API (GET
# /api/email) on http://127.0.0.1:1080, where verification and reset links can be read.
if [ -z "${SMTP_URL:-}${SMTP_URL_FILE:-}" ]; then
  if curl -fsS "http://127.0.0.1:1080/api/healthz" >/dev/null 2>&1; then
    log "a mail catcher already answers on 127.0.0.1:1080; using it"
  else
    maildev_bin="$(ensure_maildev)" || { log "maildev could not be installed: emails are not sent"; maildev_bin=""; }
    if [ -n "$maildev_bin" ]; then
      "$maildev_bin" --smtp 1025 --web 1080 --ip 127.0.0.1 --web-ip 127.0.0.1 >"$run_dir/logs/maildev.log" 2>&1 &
      echo "$! maildev" >> "$run_dir/pids.servers"
      for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:1080/api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    fi
  fi
  export SMTP_URL="smtp://127.0.0.1:1025"
fi
# The front end the emailed links open (a single-page app of yours on another origin).
export PUBLIC_APP_URL="${PUBLIC_APP_URL:-http://localhost:3000}"
# As in the image (deploy/Dockerfile): two glibc malloc arenas keep the services' RSS flat.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
# Local development: webhooks may target local receivers.
export WEBHOOK_ALLOW_PRIVATE_TARGETS="${WEBHOOK_ALLOW_PRIVATE_TARGETS:-true}"

# PgBouncer (PGBOUNCER=1; k8s/README.md, "PostgreSQL connections and PgBouncer"):
# transaction mode for the services' request traffic (DATABASE_URL), with
# max_prepared_statements because diesel-async over tokio-postgres always uses named
# prepared statements (hence a PgBouncer >= 1.21 built by ensure_pgbouncer, not Debian
# 12's 1.18). What takes session-level advisory locks or runs CREATE DATABASE ...
# TEMPLATE goes to PostgreSQL directly: the migrations and `tenant init` here, and the
# tenant service's provisioning, through DATABASE_ADMIN_URL.
pooled_url="$DATABASE_URL"
if [ "$pgbouncer" = 1 ]; then
  pgbouncer_port="${PGBOUNCER_PORT:-6432}"
  pgbouncer_dir="$run_dir/pgbouncer"
  # dev-down.sh stops PgBouncer by its pid file, after the services (their shutdown may
  # still write through it).
  pid="$(start_pgbouncer "$pgbouncer_dir" "$pgbouncer_port" "$run_dir/logs/pgbouncer.log")" \
    || { scripts/dev-down.sh >/dev/null 2>&1 || true; exit 1; }
  echo "$pid" > "$pgbouncer_dir/pgbouncer.pid"
  pooled_url="$(pooled_database_url "$pgbouncer_port" saas_platform)"
  # PgBouncer refuses statement_timeout in a client's startup options (1.24): the
  # services send none through it (k8s/README.md, "PostgreSQL connections and PgBouncer").
  export DATABASE_STATEMENT_TIMEOUT_MS="${DATABASE_STATEMENT_TIMEOUT_MS:-0}"
  log "pgbouncer $PGBOUNCER_VERSION on 127.0.0.1:$pgbouncer_port (transaction mode) in front of ${PG_SERVER_URL%%\?*}"
fi

log "migrating the main database and the tenant template"
"$bin_dir/tenant" migrate
"$bin_dir/tenant" migrate-tenants

: > "$run_dir/pids"
[ -f "$run_dir/pids.servers" ] && cat "$run_dir/pids.servers" >> "$run_dir/pids" && rm -f "$run_dir/pids.servers"
for service in $SERVICES; do
  port="${PORTS[$service]:?unknown service $service}"
  # Request traffic through PgBouncer when there is one; administration and
  # migrations (the tenant service's provisioning) straight to PostgreSQL.
  DATABASE_URL="$pooled_url" DATABASE_ADMIN_URL="${DATABASE_ADMIN_URL:-$DATABASE_URL}" PORT="$port" INTERNAL_PORT="$(( port + 1000 ))" \
    "$bin_dir/$service" serve >"$run_dir/logs/$service.log" 2>&1 &
  echo "$! $service" >> "$run_dir/pids"
done

stop() {
  scripts/dev-down.sh
  exit 0
}
$detach || trap stop INT TERM

for service in $SERVICES; do
  port="${PORTS[$service]}"
  ok=false
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1; then ok=true; break; fi
    sleep 0.1
  done
  if $ok; then
    printf '  %-13s http://127.0.0.1:%s  (ready; docs /api-docs/openapi.json)\n' "$service" "$port"
  else
    log "$service did not become ready; its log ($run_dir/logs/$service.log):"
    tail -n 20 "$run_dir/logs/$service.log" >&2
    scripts/dev-down.sh
    exit 1
  fi
done
# The gateway: nginx with deploy/gateway/nginx.conf.template.
gateway_port="${GATEWAY_PORT:-4999}"
if [ "$SERVICES" = "auth tenant document sso event-worker" ]; then
  ensure_nginx
  gateway_dir="$run_dir/gateway"
  mkdir -p "$gateway_dir"
  chmod 777 "$gateway_dir"   # nginx's workers drop root and keep temporary files here
  max_upload="${MAX_UPLOAD_BYTES:-104857600}"
  GATEWAY_LISTEN="127.0.0.1:$gateway_port" GATEWAY_RUNTIME_DIR="$gateway_dir" \
  GATEWAY_STATIC_DIR="$PWD/deploy/gateway/static" \
  GATEWAY_MAX_BODY_SIZE="$(( max_upload / 1048576 + 1 ))m" \
  GATEWAY_TRUSTED_PROXY="${GATEWAY_TRUSTED_PROXY:-unix:}" \
  GATEWAY_AUTH_RATE="${GATEWAY_AUTH_RATE:-10r/s}" GATEWAY_AUTH_BURST="${GATEWAY_AUTH_BURST:-50}" \
  CORS_ALLOWED_ORIGINS="${CORS_ALLOWED_ORIGINS-http://localhost:3000}" \
  AUTH_UPSTREAM=127.0.0.1:5001 TENANT_UPSTREAM=127.0.0.1:5002 DOCUMENT_UPSTREAM=127.0.0.1:5003 \
  SSO_UPSTREAM=127.0.0.1:5004 EVENT_WORKER_UPSTREAM=127.0.0.1:5005 \
  PLATFORM_VERSION="$(sed -nE 's/^version = "(.*)"/\1/p' Cargo.toml | head -1)" \
    python3 deploy/gateway/render.py deploy/gateway/nginx.conf.template "$gateway_dir/nginx.conf"
  nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
  "$nginx_bin" -p "$gateway_dir" -c "$gateway_dir/nginx.conf" -e "$gateway_dir/error.log" -g 'daemon off;' \
    >"$run_dir/logs/gateway.log" 2>&1 &
  echo "$! gateway" >> "$run_dir/pids"
  ok=false
  for _ in $(seq 1 50); do
    if curl -fsS "http://127.0.0.1:$gateway_port/health" >/dev/null 2>&1; then ok=true; break; fi
    sleep 0.1
  done
  $ok || { log "the gateway did not start: $(cat "$gateway_dir/error.log" 2>/dev/null)"; scripts/dev-down.sh; exit 1; }
  printf '  %-13s http://127.0.0.1:%s  (the platform: every public API)\n' "gateway" "$gateway_port"
fi

# An admin and a test tenant to try it with (idempotent: later runs keep them).
if [[ " $SERVICES " == *" tenant "* ]]; then
  "$bin_dir/tenant" init --create-admin --create-test-tenant 2>&1 | sed 's/^/  /' || log "tenant init failed"
fi

log "logs in $run_dir/logs; database $(printf '%s' "${DATABASE_URL%%\?*}" | sed -E 's#//[^@]*@#//#'), Redis $REDIS_URL"
if [ "$pgbouncer" = 1 ]; then
  log "pgbouncer: the services' requests on $pooled_url; admin console: psql $(pooled_database_url "$pgbouncer_port" pgbouncer) -c 'SHOW POOLS'"
fi

if $detach; then
  log "running in the background; stop with scripts/dev-down.sh"
else
  log "press Ctrl-C to stop"
  wait
fi
