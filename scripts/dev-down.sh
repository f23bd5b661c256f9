#!/usr/bin/env bash
# Stops the services scripts/dev-up.sh started (by the PIDs it recorded), then its
# PgBouncer (PGBOUNCER=1). With --servers, also stops the private PostgreSQL and Redis
# it may have started.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
pids_file=".local/run/pids"
# stop_all <names regex> <seconds>: TERM every recorded process whose name matches, wait
# up to <seconds> for their graceful shutdown, then KILL what is left.
stop_all() {
  local pattern="$1" seconds="$2" pid name alive
  while read -r pid name; do
    [[ "$name" =~ $pattern ]] || continue
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" && log "stopped $name ($pid)"; fi
  done < "$pids_file"
  for _ in $(seq 1 $((seconds * 10))); do
    alive=false
    while read -r pid name; do
      [[ "$name" =~ $pattern ]] && kill -0 "$pid" 2>/dev/null && alive=true
    done < "$pids_file"
    $alive || break
    sleep 0.1
  done
  while read -r pid name; do
    [[ "$name" =~ $pattern ]] && kill -KILL "$pid" 2>/dev/null
  done < "$pids_file"
}
if [ -f "$pids_file" ]; then
  # The services first, while the broker, S3 and the gateway still answer: consumers
  # commit and leave their groups (a broker stopped under them kept tansu's groups from
  # forming again on the next start, and no event was consumed), the relay finishes.
  stop_all '^(auth|tenant|document|sso|event-worker)$' 15
  stop_all '.' 5
  rm -f "$pids_file"
fi
# PgBouncer (PGBOUNCER=1) last: the services' graceful shutdown may still write through
# it. Its pid file is the one dev-up.sh wrote ($! of the PgBouncer it started), so only
# a process of that name is signalled: never a pid reused by something else.
pgbouncer_pid_file=".local/run/pgbouncer/pgbouncer.pid"
if [ -f "$pgbouncer_pid_file" ]; then
  pid="$(cat "$pgbouncer_pid_file")"
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pgbouncer ]; then
    # SIGINT: stop once server connections are released (SIGTERM would wait for every
    # client, and a client left over outside this run could hold it up).
    kill -INT "$pid" && log "stopped pgbouncer ($pid)"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$pgbouncer_pid_file"
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
