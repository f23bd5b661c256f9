#!/usr/bin/env bash
# Stops the services scripts/dev-up.sh started (by the PIDs it recorded). With
# --servers, also stops the private PostgreSQL and Redis it may have started.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
pids_file=".local/run/pids"
if [ -f "$pids_file" ]; then
  while read -r pid service; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" && log "stopped $service ($pid)"
    fi
  done < "$pids_file"
  # Give them their graceful shutdown, then make sure.
  for _ in $(seq 1 50); do
    alive=false
    while read -r pid _; do kill -0 "$pid" 2>/dev/null && alive=true; done < "$pids_file"
    $alive || break
    sleep 0.1
  done
  while read -r pid _; do kill -KILL "$pid" 2>/dev/null; done < "$pids_file"
  rm -f "$pids_file"
fi
if [ "${1:-}" = "--servers" ]; then
  dir="$(state_dir)"
  if [ -f "$dir/postgres/postmaster.pid" ]; then
    run=(); is_root && run=(runuser -u postgres --)
    "${run[@]}" "$(pg_bin_dir)/pg_ctl" -D "$dir/postgres" -m fast stop && log "stopped the private PostgreSQL"
  fi
  if [ -f "$dir/redis/redis.pid" ]; then
    kill "$(cat "$dir/redis/redis.pid")" 2>/dev/null && log "stopped the private Redis"
  fi
fi
