#!/bin/bash
# As the official image's 20-envsubst-on-templates.sh: only variables that are set are
# substituted, so nginx's own $variables stay.
set -euo pipefail
if [ "${1:-}" = nginx ] && [ -d /etc/nginx/templates ]; then
  out="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
  defined="$(printf '${%s} ' $(env | cut -d= -f1))"
  for template in /etc/nginx/templates/*.template; do
    [ -f "$template" ] || continue
    target="$out/$(basename "$template" .template)"
    envsubst "$defined" < "$template" > "$target"
    echo "rendered $template to $target"
  done
fi
exec "$@"
