# Shared by scripts/dev-up.sh, scripts/test.sh and .ci/run: find or start PostgreSQL
# and Redis. Sourced, not run.
#
# ensure_postgres sets PG_SERVER_URL (a superuser URL to the `postgres` database):
#   1. PG_SERVER_URL if already set;
#   2. the server on 127.0.0.1:5432 if it accepts user postgres without a password;
#   3. this machine's cluster, started with pg_ctlcluster (root only);
#   4. a private cluster (port 55432) from the machine's binaries, installing Debian's
#      postgresql package first when missing and permitted (root, apt-get, and
#      PLATFORM_NO_INSTALL unset).
# ensure_redis sets REDIS_SERVER_URL the same way (private server on port 56379).

PLATFORM_ROOT="${PLATFORM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

log() { printf '%s\n' "$*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }

# Where private servers keep their data. The postgres user must reach it, so as root
# it lives under /var/tmp rather than in a home or work directory it cannot enter.
state_dir() {
  if [ -n "${PLATFORM_STATE_DIR:-}" ]; then echo "$PLATFORM_STATE_DIR"
  elif is_root; then echo /var/tmp/saas-platform
  else echo "$PLATFORM_ROOT/.local"
  fi
}

apt_install() {
  if [ -n "${PLATFORM_NO_INSTALL:-}" ] || ! is_root || ! command -v apt-get >/dev/null; then
    log "missing: $* (install it, or run as root to let this script install it)"
    return 1
  fi
  log "installing $* from Debian's packages"
  if [ -z "${APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_bin_dir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

pg_accepts() { # host port
  local bin
  bin="$(pg_bin_dir)"
  [ -n "$bin" ] || return 1
  "$bin/psql" "postgresql://postgres@$1:$2/postgres" -Atqc 'SELECT 1' >/dev/null 2>&1
}

ensure_postgres() {
  if [ -n "${PG_SERVER_URL:-}" ]; then return 0; fi
  if [ -z "$(pg_bin_dir)" ]; then apt_install postgresql || return 1; fi
  if pg_accepts 127.0.0.1 5432; then
    PG_SERVER_URL="postgresql://postgres@127.0.0.1:5432/postgres"; export PG_SERVER_URL; return 0
  fi
  if is_root && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    if [ -n "$version" ] && pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 \
       && pg_accepts 127.0.0.1 5432; then
      log "started the machine's PostgreSQL $version"
      PG_SERVER_URL="postgresql://postgres@127.0.0.1:5432/postgres"; export PG_SERVER_URL; return 0
    fi
  fi
  local bin dir port=55432
  bin="$(pg_bin_dir)"
  dir="$(state_dir)/postgres"
  if ! pg_accepts 127.0.0.1 "$port"; then
    mkdir -p "$dir"
    local run=()
    if is_root; then chown postgres: "$dir"; chmod 700 "$dir"; run=(runuser -u postgres --); fi
    if [ ! -f "$dir/PG_VERSION" ]; then
      "${run[@]}" "$bin/initdb" -D "$dir" -U postgres --auth=trust --no-sync >/dev/null
    fi
    log "starting a private PostgreSQL on 127.0.0.1:$port ($dir)"
    "${run[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
  fi
  PG_SERVER_URL="postgresql://postgres@127.0.0.1:$port/postgres"; export PG_SERVER_URL
}

redis_answers() { # port
  redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG
}

ensure_redis() {
  if [ -n "${REDIS_SERVER_URL:-}" ]; then return 0; fi
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt_install redis-server || return 1
  fi
  if redis_answers 6379; then
    REDIS_SERVER_URL="redis://127.0.0.1:6379"; export REDIS_SERVER_URL; return 0
  fi
  local port=56379 dir
  dir="$(state_dir)/redis"
  if ! redis_answers "$port"; then
    mkdir -p "$dir"
    log "starting a private Redis on 127.0.0.1:$port ($dir)"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
      --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    local i
    for i in $(seq 1 50); do redis_answers "$port" && break; sleep 0.1; done
  fi
  REDIS_SERVER_URL="redis://127.0.0.1:$port"; export REDIS_SERVER_URL
}

# postgres URL of database $2 on the server of URL $1
database_url_for() {
  printf '%s\n' "${1%/*}/$2"
}

# ensure_nginx: the gateway's tests run Debian's nginx (deploy/gateway); installs it
# when missing and permitted. Never started as a system service.
ensure_nginx() {
  if [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null; then return 0; fi
  apt_install nginx
}

# ensure_chromium: the browser check of CORS (tests/tests/e2e/browser.rs) drives
# Debian's headless Chromium through ChromeDriver; installs both when missing.
ensure_chromium() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then return 0; fi
  apt_install chromium chromium-driver
}

# ensure_maildev: prints the path of the mail catcher of the local run (npm maildev,
# pinned), installed once into $(state_dir)/maildev when missing (needs Node.js 20+ and
# npm, and PLATFORM_NO_INSTALL unset).
MAILDEV_VERSION=3.0.0
ensure_maildev() {
  local prefix bin
  prefix="$(state_dir)/maildev"
  bin="$prefix/node_modules/.bin/maildev"
  if [ -x "$bin" ] && grep -q "\"version\": \"$MAILDEV_VERSION\"" "$prefix/node_modules/maildev/package.json" 2>/dev/null; then
    printf '%s\n' "$bin"; return 0
  fi
  if [ -n "${PLATFORM_NO_INSTALL:-}" ] || ! command -v npm >/dev/null; then
    log "maildev is missing (npm install --prefix $prefix maildev@$MAILDEV_VERSION)"
    return 1
  fi
  log "installing maildev $MAILDEV_VERSION into $prefix (once)"
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "maildev@$MAILDEV_VERSION" >&2 || return 1
  printf '%s\n' "$bin"
}

# Node.js >= 20.19 with npm runs the OpenID Connect provider of the SSO tests
# (crates/testkit/oidc-provider, npm oidc-provider 9). Debian 12's own nodejs (18) is
# too old, so it is not installed from there: say what is missing instead.
ensure_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    log "Node.js 20.19+ with npm is missing: the SSO tests need it (NodeSource's node_20.x or newer)"
    return 1
  fi
  local version major minor
  version="$(node --version | sed 's/^v//')"
  major="${version%%.*}"; minor="${version#*.}"; minor="${minor%%.*}"
  if [ "$major" -lt 20 ] || { [ "$major" -eq 20 ] && [ "$minor" -lt 19 ]; }; then
    log "Node.js $version is too old for the SSO tests (20.19 or later)"
    return 1
  fi
}

# The contract lane's Python tools (schemathesis, openapi-spec-validator), pinned in
# tests/contract/requirements.txt, in a virtualenv under the state folder, made once
# per machine and remade when the pins change. Exports PLATFORM_PYTHON_TOOLS (its bin).
ensure_python_tools() {
  local requirements="$PLATFORM_ROOT/tests/contract/requirements.txt" venv stamp want
  venv="$(state_dir)/python-tools"
  stamp="$venv/requirements.sha256"
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/schemathesis" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    if ! command -v python3 >/dev/null; then apt_install python3 python3-venv || return 1; fi
    log "installing the contract lane's Python tools into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || { apt_install python3-venv && python3 -m venv "$venv"; } || return 1
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$requirements" || return 1
    echo "$want" > "$stamp"
  fi
  PLATFORM_PYTHON_TOOLS="$venv/bin"; export PLATFORM_PYTHON_TOOLS
}

# ensure_tansu: prints the path of the Kafka-protocol broker the local run and the tests
# use (tansu, crates.io, pinned, with its SQLite storage engine), built once per machine
# into a cache folder this script owns and reused by later runs and CI on the same
# machine. A cold build takes about 20 minutes on 2 cores (docs/DESIGN-NOTES.md "Kafka
# on tansu"); a lock keeps two callers from building it twice.
TANSU_VERSION=0.6.0
cache_dir() {
  if [ -n "${PLATFORM_CACHE_DIR:-}" ]; then echo "$PLATFORM_CACHE_DIR"
  elif is_root; then echo /var/cache/saas-platform
  else echo "$PLATFORM_ROOT/.local/cache"
  fi
}
tansu_cache() { echo "$(cache_dir)/tansu-$TANSU_VERSION"; }
ensure_tansu() {
  local root bin
  root="$(tansu_cache)"
  bin="$root/bin/tansu"
  if [ -x "$bin" ]; then printf '%s\n' "$bin"; return 0; fi
  if [ -n "${PLATFORM_NO_INSTALL:-}" ]; then
    log "tansu is missing (cargo install --locked tansu@$TANSU_VERSION --features libsql --root $root)"
    return 1
  fi
  mkdir -p "$root"
  (
    flock 9
    if [ -x "$bin" ]; then exit 0; fi
    log "building tansu $TANSU_VERSION into $root (once per machine; about 20 minutes on 2 cores)"
    local started=$SECONDS
    # --locked: the crate's own lock file (it names five yanked crates; cargo warns).
    CARGO_TARGET_DIR="$root/target" cargo install --quiet --locked "tansu@$TANSU_VERSION" \
      --features libsql --root "$root" >&2 || exit 1
    rm -rf "$root/target"
    log "tansu built in $((SECONDS - started)) s"
  ) 9>"$root/.lock" || return 1
  printf '%s\n' "$bin"
}

# ensure_build_deps: what the workspace's build needs beyond Rust and gcc, from
# Debian's packages when missing: OpenSSL's headers and pkg-config, which librdkafka
# links for Kafka over TLS (rdkafka's `ssl` feature).
# ensure_toolchain: the toolchain rust-toolchain.toml names must exist before any cargo
# command in the repository, or rustup tries to download it (which fails where only
# the package registries are reachable). A machine whose stable toolchain is that very
# version gets it under that name as well (a link, as rustup's own directory layout).
ensure_toolchain() {
  local channel host stable
  channel="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$PLATFORM_ROOT/rust-toolchain.toml")"
  [ -n "$channel" ] || { log "rust-toolchain.toml names no channel"; return 1; }
  command -v rustup >/dev/null 2>&1 || return 0
  if rustup run "$channel" rustc --version >/dev/null 2>&1; then return 0; fi
  host="$(rustc +stable -vV 2>/dev/null | sed -n 's/^host: //p')"
  stable="$(rustup run stable rustc --version 2>/dev/null || true)"
  if [ -n "$host" ] && [[ "$stable" == "rustc $channel "* ]]; then
    ln -sfn "$(rustup show home)/toolchains/stable-$host" "$(rustup show home)/toolchains/$channel-$host"
    log "toolchain $channel: the machine's stable one ($stable)"
    return 0
  fi
  log "toolchain $channel (rust-toolchain.toml) is not installed; rustup will try to fetch it"
}

# ensure_cargo_tool NAME VERSION: prints the directory holding the cargo subcommand
# NAME (cargo-deny, cargo-machete), built once per machine into the cache at the pinned
# VERSION with its own lock file (cargo install --locked).
ensure_cargo_tool() {
  local name="$1" version="$2" root start
  root="$(cache_dir)/$name-$version"
  if [ -x "$root/bin/$name" ]; then printf '%s\n' "$root/bin"; return 0; fi
  log "building $name $version into $root (once per machine)"
  start=$SECONDS
  CARGO_TARGET_DIR="$root/target" cargo install --locked --quiet --root "$root" \
    --version "$version" "$name" >&2 || { log "$name could not be built"; return 1; }
  rm -rf "$root/target"
  log "$name built in $(( SECONDS - start )) s"
  printf '%s\n' "$root/bin"
}

ensure_build_deps() {
  local missing=() pkg
  for pkg in libssl-dev pkg-config; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}" || return 1; fi
}

# ensure_pgbouncer: prints the path of the PgBouncer the local run puts in front of
# PostgreSQL (PGBOUNCER=1; k8s/README.md, "PostgreSQL connections and PgBouncer").
# Transaction mode needs 1.21 or later for max_prepared_statements: our driver
# (diesel-async over tokio-postgres) always uses protocol-level named prepared
# statements, and Debian 12 ships 1.18. So 1.24.1 is built from Debian trixie's
# upstream tarball (the one mirror this machine reaches; SHA-256 pinned from trixie's
# Sources index), once per machine, into a cache folder this script owns, under a lock
# like tansu. The build takes about 20 s on 2 cores (configure and make).
#
# Only the upstream tarball is built, not Debian's +deb13u2 patches: that revision
# carries fixes for CVE-2025-12819 and CVE-2026-6664..6667 (auth_query, SCRAM packet
# parsing, KILL_CLIENT). That is acceptable for a local pooler on 127.0.0.1 with trust
# auth and no auth_query; production images need 1.25.2 or a patched build.
PGBOUNCER_VERSION=1.24.1
PGBOUNCER_SHA256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
PGBOUNCER_SOURCE_URL="http://deb.debian.org/debian/pool/main/p/pgbouncer/pgbouncer_$PGBOUNCER_VERSION.orig.tar.gz"
pgbouncer_cache() { echo "$(cache_dir)/pgbouncer-$PGBOUNCER_VERSION"; }
# Runs, not merely exists: the binary links the machine's libevent and OpenSSL, which
# an apt autoremove of the -dev packages can take away (then it is built again).
pgbouncer_runs() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }
ensure_pgbouncer() {
  local root bin
  root="$(pgbouncer_cache)"
  bin="$root/bin/pgbouncer"
  if pgbouncer_runs "$bin"; then printf '%s\n' "$bin"; return 0; fi
  if [ -n "${PLATFORM_NO_INSTALL:-}" ]; then
    log "pgbouncer $PGBOUNCER_VERSION is missing (build it from $PGBOUNCER_SOURCE_URL into $root/bin)"
    return 1
  fi
  # Build dependencies, from Debian's packages when missing. No PAM, systemd or c-ares
  # (configured out below): the local pooler authenticates nobody, runs under no
  # service manager and resolves only 127.0.0.1.
  local missing=() pkg
  for pkg in libevent-dev libssl-dev pkg-config make gcc; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}" || return 1; fi
  mkdir -p "$root"
  (
    flock 9
    if pgbouncer_runs "$bin"; then exit 0; fi
    log "building pgbouncer $PGBOUNCER_VERSION into $root (once per machine; about 20 s)"
    started=$SECONDS
    work="$root/build"
    rm -rf "$work" && mkdir -p "$work" || exit 1
    # Every step ends in `|| exit 1`: errexit does not apply inside a subshell whose
    # status the caller tests.
    curl -fsSL --retry 3 -o "$work/source.tar.gz" "$PGBOUNCER_SOURCE_URL" || exit 1
    if ! echo "$PGBOUNCER_SHA256  $work/source.tar.gz" | sha256sum -c --quiet - >&2; then
      log "pgbouncer source: SHA-256 mismatch (expected $PGBOUNCER_SHA256)"; exit 1
    fi
    tar -xzf "$work/source.tar.gz" -C "$work" || exit 1
    cd "$work/pgbouncer-$PGBOUNCER_VERSION" || exit 1
    ./configure --prefix="$root" --without-pam --without-systemd --without-cares >"$work/configure.log" 2>&1 \
      || { log "pgbouncer configure failed: $(tail -n 20 "$work/configure.log")"; exit 1; }
    # Only the binary, which is all the local run needs. No pandoc either way: the
    # release tarball ships its man pages prebuilt, and only `make -C doc` (never
    # entered by the top-level build or install) regenerates them with pandoc.
    make -j"$(nproc)" pgbouncer >"$work/make.log" 2>&1 \
      || { log "pgbouncer build failed: $(tail -n 20 "$work/make.log")"; exit 1; }
    mkdir -p "$root/bin" || exit 1
    # Copied under a temporary name and renamed: a reader never sees half a binary.
    install -m 755 pgbouncer "$root/bin/pgbouncer.tmp" && mv "$root/bin/pgbouncer.tmp" "$bin" || exit 1
    cd / && rm -rf "$work"
    log "pgbouncer built in $((SECONDS - started)) s: $("$bin" --version | head -n 1)"
  ) 9>"$root/.lock" || return 1
  printf '%s\n' "$bin"
}

# start_pgbouncer <dir> <port> <log>: writes a PgBouncer configuration into <dir> for
# the server of PG_SERVER_URL (postgresql://user@host:port/db, trusted without a
# password, as ensure_postgres makes it), starts PgBouncer on 127.0.0.1:<port> logging
# to <log>, waits until it serves the server's `postgres` database through it, and
# prints its pid. Transaction mode with max_prepared_statements (k8s/README.md,
# "PostgreSQL connections and PgBouncer"); every database of the server is reachable
# under its own name. Used by the local run (PGBOUNCER=1) and the tests (PGBOUNCER=1
# scripts/test.sh).
start_pgbouncer() {
  local dir="$1" port="$2" logfile="$3" bin pg_user pg_host pg_port pid psql_bin
  bin="$(ensure_pgbouncer)" || { log "pgbouncer could not be built"; return 1; }
  if [[ ! "$PG_SERVER_URL" =~ ^postgres(ql)?://([A-Za-z0-9_]+)@([A-Za-z0-9.-]+):([0-9]+)/ ]]; then
    log "PgBouncer needs a server URL of the form postgresql://user@host:port/db, trusted without a password (PG_SERVER_URL)"
    return 1
  fi
  pg_user="${BASH_REMATCH[2]}" pg_host="${BASH_REMATCH[3]}" pg_port="${BASH_REMATCH[4]}"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "something already listens on 127.0.0.1:$port (PGBOUNCER_PORT)"; return 1
  fi
  mkdir -p "$dir"
  # Trust, like the local PostgreSQL: the user need only be listed; PgBouncer logs in
  # to the server as that user without a password.
  printf '"%s" ""\n' "$pg_user" > "$dir/userlist.txt"
  cat > "$dir/pgbouncer.ini" <<INI
; Written by scripts/lib/services.sh (start_pgbouncer); rewritten at every start.
[databases]
; Every database of the server under its own name: the main one and each tenant's,
; whose URLs the services derive from DATABASE_URL by replacing the database name.
* = host=$pg_host port=$pg_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
; TCP only: no socket in /tmp next to the servers'.
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
; Plain TCP to the server, as the services' own direct connections (diesel-async
; connects without TLS); PgBouncer's default would negotiate TLS on loopback.
server_tls_sslmode = disable
; The admin console: psql postgresql://$pg_user@127.0.0.1:$port/pgbouncer -c 'SHOW POOLS'
admin_users = $pg_user
stats_users = $pg_user
pool_mode = transaction
; Named prepared statements of diesel-async / tokio-postgres, carried across server
; connections (PgBouncer >= 1.21).
max_prepared_statements = 200
; Server connections per database: DATABASE_POOL_SIZE's default. The services keep
; their own pools of client connections, which cost PgBouncer nearly nothing.
default_pool_size = 5
; PgBouncer's server connections over all databases (the main one and the tenants'),
; well under a stock max_connections of 100 next to what goes to the server directly
; (migrations, administration; docs/DESIGN-NOTES.md, "Connection budget").
max_user_connections = 50
max_client_conn = 2000
; Idle server connections go back soon: a database nobody uses (a tenant gone quiet, a
; test's database about to be dropped) holds none of the 50 for long.
server_idle_timeout = 15
autodb_idle_timeout = 60
INI
  chmod 644 "$dir/pgbouncer.ini" "$dir/userlist.txt"
  # PgBouncer refuses to run as root: as root it drops to the postgres user itself
  # (-u, after reading its configuration), so $! is PgBouncer's own pid. It logs to
  # stderr, which this shell opens, so the postgres user needs no writable folder.
  local as_user=(); is_root && as_user=(-u postgres)
  "$bin" "${as_user[@]}" "$dir/pgbouncer.ini" >"$logfile" 2>&1 &
  pid=$!
  psql_bin="$(pg_bin_dir)/psql"
  for _ in $(seq 1 100); do
    "$psql_bin" "$(pooled_database_url "$port" postgres)" -Atqc 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.1
  done
  if ! "$psql_bin" "$(pooled_database_url "$port" postgres)" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    log "pgbouncer did not serve 127.0.0.1:$port: $(tail -n 20 "$logfile")"
    kill "$pid" 2>/dev/null || true
    return 1
  fi
  printf '%s\n' "$pid"
}

# pooled_database_url <port> <database>: the URL of <database> through the PgBouncer
# on 127.0.0.1:<port> (start_pgbouncer).
pooled_database_url() {
  [[ "$PG_SERVER_URL" =~ ^postgres(ql)?://([A-Za-z0-9_]+)@ ]] || return 1
  database_url_for "postgresql://${BASH_REMATCH[2]}@127.0.0.1:$1/postgres" "$2"
}

# ensure_promtool: prints the path of Prometheus's promtool, which checks the alert rules
# (deploy/prometheus). Taken once per machine out of Debian's prometheus package
# (downloaded and unpacked, never installed: that would start a Prometheus server).
ensure_promtool() {
  if command -v promtool >/dev/null; then command -v promtool; return 0; fi
  local dir
  dir="$(cache_dir)/promtool"
  if [ -x "$dir/promtool" ]; then printf '%s\n' "$dir/promtool"; return 0; fi
  if [ -n "${PLATFORM_NO_INSTALL:-}" ] || ! command -v apt-get >/dev/null; then
    log "promtool is missing (Debian's prometheus package has it)"
    return 1
  fi
  log "unpacking promtool from Debian's prometheus package into $dir (once)"
  local work
  work="$(mktemp -d)"
  if ! (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1); then
    if is_root; then DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null; fi
    (cd "$work" && apt-get download -qq prometheus >/dev/null) || { rm -rf "$work"; return 1; }
  fi
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root" || { rm -rf "$work"; return 1; }
  mkdir -p "$dir"
  cp "$work/root/usr/bin/promtool" "$dir/promtool"
  rm -rf "$work"
  printf '%s\n' "$dir/promtool"
}
