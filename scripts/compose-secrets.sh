#!/usr/bin/env bash
# Makes the secrets docker-compose.yml hands to its containers as files
# (/run/secrets/…, read through each setting's `_FILE`), once: deploy/dev-secrets/ keeps
# them (never committed; the folder is readable by its owner only, the files by the
# containers' non-root users). An existing file is kept, so a stack's data stays usable;
# delete one to make it again. Needs openssl.
#
#   scripts/compose-secrets.sh && docker-compose up --build
set -euo pipefail
cd "$(dirname "$0")/../deploy/dev-secrets"
chmod 700 .
umask 022

random() { # bytes → URL-safe base64 without padding
  head -c "$1" /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '='
}
make_secret() { # name, then the command that prints its content
  local name="$1"
  shift
  if [ -s "$name" ]; then return 0; fi
  "$@" > "$name.tmp"
  chmod 644 "$name.tmp"
  mv "$name.tmp" "$name"
  echo "made deploy/dev-secrets/$name" >&2
}

# auth's Ed25519 signing key, PKCS#8 PEM (what `auth generate-key` prints).
make_secret jwt-private-key.pem openssl genpkey -algorithm ed25519
make_secret internal-service-token random 36
# The keyring sealing SSO tokens, webhook secrets and emailed links: id=base64(32 bytes).
make_secret secrets-keyring sh -c "printf 'compose1=%s' \"\$(head -c 32 /dev/urandom | base64 -w0)\""
make_secret postgres-password random 24
# The services' DATABASE_URL, with that password.
make_secret database-url sh -c "printf 'postgres://saas:%s@postgres:5432/saas_platform' \"\$(cat postgres-password)\""
# MinIO's root password: the services' S3 secret key.
make_secret s3-secret-key random 30
