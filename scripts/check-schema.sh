#!/usr/bin/env bash
# Fails if a committed diesel schema.rs differs from what the migrations produce:
# applies each migration set to a scratch database and compares `diesel print-schema`.
# Needs the diesel CLI (installed with cargo when missing) and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
ensure_toolchain

if ! command -v diesel >/dev/null; then
  if ! ls /usr/include/postgresql/libpq-fe.h >/dev/null 2>&1; then apt_install libpq-dev; fi
  log "installing the diesel CLI"
  cargo install --locked diesel_cli --version '~2.3' --no-default-features --features postgres
fi
ensure_postgres
psql_bin="$(pg_bin_dir)/psql"
# An empty diesel config: with the repository's diesel.toml, `migration run` would
# rewrite the committed schema.rs itself and the comparison would prove nothing.
config="$(mktemp --suffix=.toml)"
trap 'rm -f "$config"' EXIT
status=0
for set in main tenant; do
  db="schema_check_${set}_$$"
  "$psql_bin" "$PG_SERVER_URL" -qc "CREATE DATABASE $db"
  url="$(database_url_for "$PG_SERVER_URL" "$db")"
  case $set in
    main) schema=crates/main-db/src/schema.rs ;;
    tenant) schema=crates/tenant-db/src/schema.rs ;;
  esac
  if diesel migration run --config-file "$config" --database-url "$url" --migration-dir "migrations/$set" >/dev/null \
     && diesel print-schema --config-file "$config" --database-url "$url" > "/tmp/$db.rs"; then
    if ! diff -u "$schema" "/tmp/$db.rs"; then
      log "$schema is out of date: regenerate it with diesel print-schema (see diesel.toml)"
      status=1
    fi
  else
    status=1
  fi
  rm -f "/tmp/$db.rs"
  "$psql_bin" "$PG_SERVER_URL" -qc "DROP DATABASE $db"
done
[ $status = 0 ] && log "schema.rs files match the migrations"
exit $status
