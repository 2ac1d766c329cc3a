#!/bin/sh
# Make the secret files deploy/compose.yaml mounts, once, as root (rootful docker or podman).
# Each is random, mode 0600, owned by the uid of the process that reads it:
#   turn_secret         node (uid 10001; coturn reads it as root)   >= 32 bytes (media.turn_secret_file)
#   fortrolig.pgpass    node (uid 10001)                            libpq password file (PGPASSFILE)
#   postgres_password   postgres entrypoint (root)                  POSTGRES_PASSWORD_FILE
#   redis.acl           redis (uid 999)                             ACL file: default user off
#   redis_password      node (uid 10001)                            the ACL user's password
#   metrics_token       node (uid 10001)                            >= 32 bytes (metrics.token_file)
# Existing files are kept: rerunning never rotates a secret by accident.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 0700 secrets
NODE_UID=10001
REDIS_UID=999

random() { head -c 48 /dev/urandom | base64 | tr -d '\n/+=' ; }

write() {  # write FILE OWNER CONTENT, unless FILE exists
  if [ -e "secrets/$1" ]; then echo "kept    secrets/$1"; return; fi
  printf '%s\n' "$3" > "secrets/$1"
  chown "$2:$2" "secrets/$1"
  chmod 0600 "secrets/$1"
  echo "created secrets/$1"
}

write turn_secret "$NODE_UID" "$(random)"
write metrics_token "$NODE_UID" "$(random)"
if [ ! -e secrets/postgres_password ]; then
  pg="$(random)"
  write postgres_password 0 "$pg"
  write fortrolig.pgpass "$NODE_UID" "127.0.0.1:*:fortrolig:fortrolig:$pg"
else
  echo "kept    secrets/postgres_password (and fortrolig.pgpass)"
fi
if [ ! -e secrets/redis.acl ]; then
  rp="$(random)"
  write redis.acl "$REDIS_UID" "user default off
user fortrolig on >$rp ~* &* +@all -@dangerous"
  write redis_password "$NODE_UID" "$rp"
else
  echo "kept    secrets/redis.acl (and redis_password)"
fi
