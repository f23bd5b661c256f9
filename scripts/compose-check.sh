#!/usr/bin/env bash
# Runs docker-compose.yml for real and drives the platform through its gateway: what a
# team deploying the platform does first (docs/OPERATIONS.md, "Deploying").
#
#   scripts/compose-check.sh
#
# 1. A Docker engine: DOCKER_HOST or the default socket when one answers; else a private
#    dockerd (Debian's docker.io, installed when missing) with its data, socket and log
#    under PLATFORM_CACHE_DIR/docker, stopped by its PID at the end.
# 2. Base images, once per machine: where no registry can be reached (this machine
#    reaches none), a Debian bookworm image made by debootstrap from Debian's mirror and
#    tagged `debian:bookworm-slim`, and a stand-in for `rust:<version>-bookworm` (that
#    base, the C tool chain, and the machine's Rust tool chain), so that
#    deploy/Dockerfile builds unchanged. Then the infrastructure the compose file names,
#    as local builds of the same software (deploy/compose-local/: PostgreSQL, Redis and
#    nginx from Debian; Kafka → tansu, MinIO → s3s-fs, both from crates.io), which
#    deploy/compose-local/docker-compose.local.yml swaps in with the same environment,
#    ports, volumes and (where the software allows) health checks. The platform's own
#    services are never overridden.
# 3. The five service images from deploy/Dockerfile (one shared build stage), then
#    `docker-compose up`, a wait for every health check, the checks below, the README's
#    journey through the compose gateway (scripts/compose-journey.py), a service
#    restarted and the platform seen to recover, every service stopped by SIGTERM within
#    its grace period, and `down -v`: nothing of the stack is left but the cached images.
#
# Settings: COMPOSE_CHECK_FRESH_BASE=1 makes the base and stand-in images again (after
# a change under deploy/compose-local/, say). COMPOSE_CHECK_BREAK=health makes the auth health check fail on purpose (the
# script must then fail: how its own check is shown to work); COMPOSE_CHECK_KEEP=1
# leaves the stack running at the end (then: docker-compose -p saas-compose-check
# -f docker-compose.yml -f deploy/compose-local/docker-compose.local.yml down -v).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
ensure_toolchain

started_all=$SECONDS
project=saas-compose-check
docker_cache="$(cache_dir)/docker"
work="$(mktemp -d)"
engine_pid=""
compose_up=0
rust_version="$(sed -n 's/^ARG RUST_VERSION=//p' deploy/Dockerfile)"
services=(auth tenant document sso event-worker)
mkdir -p "$docker_cache"

phase() { log "== [$((SECONDS - started_all)) s] $*"; }
fail() { log "compose-check FAILED: $*"; exit 1; }

# --- the engine -------------------------------------------------------------------------

docker_bin="$(command -v docker || true)"
# Debian's docker.io client matches its engine; another client on PATH may be newer.
[ -x /usr/bin/docker ] && docker_bin=/usr/bin/docker
engine_answers() { [ -n "$docker_bin" ] && timeout 10 "$docker_bin" info >/dev/null 2>&1; }

stop_engine() {
  [ -n "$engine_pid" ] || return 0
  kill "$engine_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$engine_pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$engine_pid" 2>/dev/null || true
}

compose() {
  docker-compose -p "$project" -f docker-compose.yml -f "$override" "$@"
}

cleanup() {
  local rc=$?
  if [ "$compose_up" = 1 ] && [ "${COMPOSE_CHECK_KEEP:-0}" != 1 ]; then
    if [ "$rc" != 0 ]; then
      log "--- the stack when it failed"
      compose ps >&2 || true
      compose logs --no-color --tail 40 >&2 2>/dev/null || true
    fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  [ "${COMPOSE_CHECK_KEEP:-0}" = 1 ] || stop_engine
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

phase "a Docker engine"
if engine_answers; then
  log "using the engine that answers ($("$docker_bin" version --format '{{.Server.Version}}'))"
  private_engine=0
else
  is_root || fail "no Docker engine answers, and starting a private one needs root"
  command -v dockerd >/dev/null || apt_install docker.io || fail "dockerd is missing"
  docker_bin=/usr/bin/docker
  command -v debootstrap >/dev/null || apt_install debootstrap || fail "debootstrap is missing"
  mkdir -p "$docker_cache/data" "$docker_cache/exec"
  export DOCKER_HOST="unix://$docker_cache/docker.sock"
  # Another run left its engine: stop it (its PID file), then start ours.
  if [ -s "$docker_cache/dockerd.pid" ] && kill -0 "$(cat "$docker_cache/dockerd.pid")" 2>/dev/null; then
    engine_pid="$(cat "$docker_cache/dockerd.pid")"
    if engine_answers; then log "a private engine from an earlier run answers: using it"; else stop_engine; engine_pid=""; fi
  fi
  if [ -z "$engine_pid" ]; then
    # --iptables=false: the machine's firewall is left alone; containers reach each
    # other on their bridge and builds reach the package registries with --network host.
    dockerd --data-root "$docker_cache/data" --exec-root "$docker_cache/exec" \
      --host "$DOCKER_HOST" --pidfile "$docker_cache/dockerd.pid" \
      --iptables=false --storage-driver overlay2 >"$docker_cache/dockerd.log" 2>&1 &
    engine_pid=$!
    for _ in $(seq 1 150); do engine_answers && break; sleep 0.2; done
    engine_answers || fail "dockerd did not start: $(tail -n 20 "$docker_cache/dockerd.log")"
  fi
  log "private engine $("$docker_bin" version --format '{{.Server.Version}}') at $DOCKER_HOST (log: $docker_cache/dockerd.log)"
  private_engine=1
fi
command -v docker-compose >/dev/null || apt_install docker-compose || fail "docker-compose is missing"
docker() { "$docker_bin" "$@"; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# Builds an image from a context folder with the package registries reachable.
build_image() { # tag context [docker build arguments...]
  local tag="$1" context="$2" t0=$SECONDS
  shift 2
  docker build --network host -q -t "$tag" "$@" "$context" >/dev/null \
    || fail "building $tag failed (rerun: docker build --network host -t $tag $* $context)"
  log "built $tag in $((SECONDS - t0)) s"
}

# --- base images ------------------------------------------------------------------------

# Official images when the engine can pull them; local stand-ins otherwise.
local_images=1
if [ "$private_engine" = 0 ] && timeout 60 "$docker_bin" pull -q debian:bookworm-slim >/dev/null 2>&1; then
  local_images=0
fi

if [ "$local_images" = 1 ]; then
  phase "base images (once per machine)"
  if [ "${COMPOSE_CHECK_FRESH_BASE:-0}" = 1 ]; then
    log "COMPOSE_CHECK_FRESH_BASE=1: the base and stand-in images are made again"
    docker rmi -f debian:bookworm-slim "rust:$rust_version-bookworm" saas-local/postgres \
      saas-local/redis saas-local/nginx saas-local/tansu saas-local/s3 >/dev/null 2>&1 || true
    rm -rf "$docker_cache/rootfs-bookworm"
  fi
  if ! have_image debian:bookworm-slim; then
    rootfs="$docker_cache/rootfs-bookworm"
    if [ ! -x "$rootfs/bin/bash" ]; then
      rm -rf "$rootfs"
      log "debootstrap bookworm (minbase) from deb.debian.org (about a minute)"
      debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian \
        >"$docker_cache/debootstrap.log" 2>&1 || fail "debootstrap failed: $(tail -n 5 "$docker_cache/debootstrap.log")"
    fi
    # As the official image: the updates and security suites, no package lists or
    # downloaded packages inside.
    cat >"$rootfs/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    # The machine's own certificate authorities (a TLS-intercepting egress, a company
    # CA): images that install ca-certificates trust them too, so that cargo reaches
    # crates.io inside a build as it does outside.
    rm -rf "$rootfs/usr/local/share/ca-certificates"
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
    tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - debian:bookworm-slim >/dev/null
    log "imported debian:bookworm-slim"
  fi
  if ! have_image "rust:$rust_version-bookworm"; then
    toolchain="$(rustc --print sysroot)"
    log "making rust:$rust_version-bookworm from debian:bookworm-slim and $toolchain ($(rustc --version))"
    mkdir -p "$work/rust"
    cp deploy/compose-local/rust/Dockerfile "$work/rust/"
    # The tool chain without its documentation, hard-linked where the file system allows.
    mkdir -p "$work/rust/toolchain"
    for part in bin lib libexec; do
      [ -d "$toolchain/$part" ] || continue
      cp -al "$toolchain/$part" "$work/rust/toolchain/" 2>/dev/null || cp -a "$toolchain/$part" "$work/rust/toolchain/"
    done
    build_image "rust:$rust_version-bookworm" "$work/rust"
  fi
  # Built every run: the engine's cache makes an unchanged one take a second, and a
  # change under deploy/compose-local/ is picked up.
  phase "infrastructure stand-ins"
  for name in postgres redis nginx; do
    build_image "saas-local/$name" "deploy/compose-local/$name"
  done
  # tansu and s3s-fs (dev-s3) as the tests and the local run build them, on this
  # machine's bookworm, so they run in the bookworm image.
  tansu_bin="$(ensure_tansu)" || fail "tansu could not be built"
  mkdir -p "$work/kafka"
  cp deploy/compose-local/kafka/Dockerfile deploy/compose-local/kafka/kafka-ready "$tansu_bin" "$work/kafka/"
  build_image saas-local/tansu "$work/kafka"
  # dev-s3 is the workspace's: rebuilt when its code changed.
  ensure_build_deps || true
  cargo build -q -p testkit --bin dev-s3 || fail "building dev-s3 failed"
  mkdir -p "$work/s3"
  cp deploy/compose-local/s3/Dockerfile "${CARGO_TARGET_DIR:-target}/debug/dev-s3" "$work/s3/"
  build_image saas-local/s3 "$work/s3"
  override=deploy/compose-local/docker-compose.local.yml
else
  # The engine pulls: no stand-ins, the compose file as it is.
  override="$work/empty.yml"
  printf 'services: {}\n' > "$override"
fi

# --- the platform's images --------------------------------------------------------------

phase "the five service images from deploy/Dockerfile"
# The shared build stage first, tagged: the cache the next run starts from (cargo-chef's
# dependency layer; only the workspace's own crates build again when they changed).
t0=$SECONDS
if ! docker build --network host -f deploy/Dockerfile --target builder \
    -t saas-platform/builder . >"$work/build-builder.log" 2>&1; then
  tail -n 40 "$work/build-builder.log" >&2
  fail "building the workspace (deploy/Dockerfile, stage builder) failed"
fi
log "built the workspace's binaries (stage builder) in $((SECONDS - t0)) s"
for service in "${services[@]}"; do
  t0=$SECONDS
  if ! docker build --network host -f deploy/Dockerfile --build-arg "SERVICE=$service" \
      -t "saas-platform/$service" . >"$work/build-$service.log" 2>&1; then
    tail -n 40 "$work/build-$service.log" >&2
    fail "building the $service image failed"
  fi
  log "built saas-platform/$service in $((SECONDS - t0)) s ($(docker image inspect -f '{{.Size}}' "saas-platform/$service" | awk '{printf "%.0f MB", $1/1e6}'))"
done
for service in "${services[@]}"; do
  user="$(docker image inspect -f '{{.Config.User}}' "saas-platform/$service")"
  case "$user" in ""|0|root|0:*|root:*) fail "saas-platform/$service runs as root ($user)";; esac
done
log "every service image runs as a non-root user"

# The stack's secrets, as files (made once; kept between runs).
bash scripts/compose-secrets.sh

# --- the stack ----------------------------------------------------------------------------

phase "docker-compose up"
if [ "${COMPOSE_CHECK_BREAK:-}" = health ]; then
  # On purpose: a health check that can never pass (the script must fail below).
  printf 'services:\n  auth:\n    healthcheck:\n      test: ["CMD", "curl", "-fsS", "http://localhost:5001/no-such-check"]\n      retries: 3\n' \
    > "$work/break.yml"
  compose() { docker-compose -p "$project" -f docker-compose.yml -f "$override" -f "$work/break.yml" "$@"; }
  log "COMPOSE_CHECK_BREAK=health: auth's health check is broken on purpose"
fi
# What an earlier run left (COMPOSE_CHECK_KEEP=1, an interrupted run) goes first.
compose down -v --remove-orphans >/dev/null 2>&1 || true
for port in 4999 9000; do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
    && fail "127.0.0.1:$port is taken (the compose stack publishes it): stop what listens there (scripts/dev-down.sh?)"
done
compose_up=1
up_started=$SECONDS
# up waits for each dependency's health check; --no-build: the images are the ones
# just built. It fails when a one-shot fails or a dependency turns unhealthy.
if ! compose up -d --no-build >"$work/up.log" 2>&1; then
  grep -E '^(ERROR|Encountered)' "$work/up.log" >&2 || cat "$work/up.log" >&2
  # compose names a container id: say which service, and what its check answered.
  for id in $(compose ps -q); do
    health="$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")"
    [ "$health" = unhealthy ] || continue
    log "unhealthy: $(docker inspect -f '{{.Name}}' "$id"), its health check ($(docker inspect -f '{{json .Config.Healthcheck.Test}}' "$id")) last answered:"
    docker inspect -f '{{range .State.Health.Log}}{{.Output}}{{end}}' "$id" | tail -n 3 >&2
  done
  fail "docker-compose up failed"
fi

# Every long-running container healthy; none exited; within the health checks' limits.
wait_healthy() {
  local deadline=$((SECONDS + 300)) pending id name state health
  while :; do
    pending=""
    for id in $(compose ps -q); do
      name="$(docker inspect -f '{{.Name}}' "$id")"; name="${name#/}"
      state="$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id")"
      health="$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")"
      case "$name" in
        *_migrate_*|*_topics_*|*_minio-init_*)
          [ "$state" = "exited 0" ] || [ "${state%% *}" = running ] \
            || fail "$name ended with $state: $(docker logs --tail 20 "$id" 2>&1)"
          [ "$state" = "exited 0" ] || pending="$pending $name" ;;
        *)
          [ "${state%% *}" = running ] || fail "$name is $state: $(docker logs --tail 20 "$id" 2>&1)"
          [ "$health" = unhealthy ] && fail "$name is unhealthy: $(docker inspect -f '{{range .State.Health.Log}}{{.Output}}{{end}}' "$id" | tail -n 3)"
          [ "$health" = healthy ] || pending="$pending $name($health)" ;;
      esac
    done
    [ -z "$pending" ] && return 0
    [ $SECONDS -lt $deadline ] || fail "not healthy after 300 s:$pending"
    sleep 1
  done
}
wait_healthy
log "every container healthy $((SECONDS - up_started)) s after up"
compose ps

phase "no secret in any container's environment or command line"
for secret in internal-service-token secrets-keyring postgres-password s3-secret-key database-url; do
  value="$(cat "deploy/dev-secrets/$secret")"
  for id in $(compose ps -q); do
    name="$(docker inspect -f '{{.Name}}' "$id")"
    docker inspect "$id" | grep -qF -- "$value" && fail "$secret shows in docker inspect $name"
    if [ "$(docker inspect -f '{{.State.Running}}' "$id")" = true ]; then
      docker top "$id" | grep -qF -- "$value" && fail "$secret shows in a command line of $name"
    fi
  done
done
log "the secrets reach the containers as files only (/run/secrets)"
# The services as k8s runs them: non-root, read-only, no capabilities.
for service in "${services[@]}"; do
  id="$(compose ps -q "$service")"
  seen="$(docker inspect -f '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}}' "$id")"
  [ "$seen" = "10001:10001 true [ALL] [no-new-privileges:true]" ] \
    || fail "$service runs as: $seen (want 10001:10001, read-only, no capabilities, no-new-privileges)"
done
log "the services run as uid 10001 on a read-only root, without capabilities"

phase "the migration ran once, before the services"
migrate_ids="$(compose ps -a -q migrate)"
[ "$(wc -w <<<"$migrate_ids")" = 1 ] || fail "expected one migrate container, found: $migrate_ids"
migrate_done="$(docker inspect -f '{{.State.FinishedAt}}' "$migrate_ids")"
[ "$(docker inspect -f '{{.RestartCount}} {{.State.ExitCode}}' "$migrate_ids")" = "0 0" ] \
  || fail "migrate restarted or failed: $(docker logs --tail 20 "$migrate_ids" 2>&1)"
for service in "${services[@]}"; do
  started="$(docker inspect -f '{{.State.StartedAt}}' "$(compose ps -q "$service")")"
  # RFC 3339 with nanoseconds, UTC: ordered as strings.
  [[ "$started" > "$migrate_done" ]] || fail "$service started ($started) before the migration ended ($migrate_done)"
done
log "migrate ended $migrate_done; the five services started after it"
docker logs "$migrate_ids" 2>&1 | tail -n 5 | sed 's/^/  migrate: /' >&2

phase "the journey through the compose gateway"
python3 scripts/compose-journey.py http://127.0.0.1:4999 --state "$work/journey.json" \
  || fail "the journey failed"

phase "a service restarted: the platform recovers"
t0=$SECONDS
compose restart document >/dev/null 2>&1 || fail "docker-compose restart document failed"
wait_healthy
log "document healthy again $((SECONDS - t0)) s after its restart"
python3 scripts/compose-journey.py http://127.0.0.1:4999 --state "$work/journey.json" --after-restart \
  || fail "the platform did not recover from the restart"

if [ "${COMPOSE_CHECK_KEEP:-0}" = 1 ]; then
  log "COMPOSE_CHECK_KEEP=1: the stack stays up on http://127.0.0.1:4999 (engine: ${DOCKER_HOST:-the default}); remove it with"
  log "  docker-compose -p $project -f docker-compose.yml$([ "$local_images" = 1 ] && echo " -f $override") down -v"
  exit 0
fi

phase "SIGTERM stops every service within its grace period"
# `compose stop` sends the image's stop signal (SIGTERM; nginx: SIGQUIT), then SIGKILL
# after the service's stop_grace_period (40 s, k8s's terminationGracePeriodSeconds).
for service in gateway "${services[@]}"; do
  id="$(compose ps -q "$service")"
  t0="$(date +%s%N)"
  compose stop "$service" >/dev/null 2>&1
  took="$(( ($(date +%s%N) - t0) / 1000000 ))"
  code="$(docker inspect -f '{{.State.ExitCode}}' "$id")"
  printf '  %-13s stopped in %5d ms, exit code %s\n' "$service" "$took" "$code" >&2
  # 137: killed after the grace period; anything but 0 is a stop that went wrong.
  [ "$code" = 0 ] || fail "$service exited with $code on SIGTERM: $(docker logs --tail 10 "$id" 2>&1)"
done

phase "docker-compose down -v"
compose down -v --remove-orphans >/dev/null 2>&1 || fail "docker-compose down -v failed"
compose_up=0
left="$(docker ps -aq --filter "label=com.docker.compose.project=$project") $(docker volume ls -q --filter "label=com.docker.compose.project=$project")"
[ -z "${left// /}" ] || fail "left behind: $left"
log "no container or volume of the stack is left"
if [ "${COMPOSE_CHECK_KEEP:-0}" != 1 ]; then
  for service in "${services[@]}"; do docker rmi "saas-platform/$service" >/dev/null; done
  # Earlier builds' layers no tag holds any more; saas-platform/builder and the base
  # images stay as the cache of the next run.
  docker image prune -f >/dev/null
  log "removed the five service images; kept saas-platform/builder and the base images ($(docker system df --format '{{.Type}} {{.Size}}' | head -n 1))"
fi

log "compose-check passed in $((SECONDS - started_all)) s"
