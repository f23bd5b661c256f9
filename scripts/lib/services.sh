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
