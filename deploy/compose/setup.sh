#!/bin/sh
# The compose stack's one-shot setup (the `setup` service, control's image),
# run before control starts; every step is skipped when already done, so
# `docker compose up` runs it again harmlessly.
#   /keys   the private signing key (control only)
#   /trust  the public key edges trust (and, later, control's link certificate)
#   /enrol  one directory per edge with its one-time enrolment token
set -eu

latchkey-control migrate

if [ ! -f /keys/signing.pem ]; then
  latchkey-control keys generate --out /keys/new
  # Fixed names, so the services' configuration needs no key id.
  mv /keys/new/signing-*.pub.pem /trust/signing.pub.pem
  mv /keys/new/signing-*.pem /keys/signing.pem
  rmdir /keys/new
  echo "signing key pair created"
fi

for edge in edge-1 edge-2; do
  if [ ! -f "/enrol/$edge/token" ]; then
    mkdir -p "/enrol/$edge"
    created=$(latchkey-control edges create --name "$edge")
    printf '%s\n' "$created" | sed -n 's/^enrolment token (shown once): //p' > "/enrol/$edge/token.new"
    [ -s "/enrol/$edge/token.new" ] || { echo "no enrolment token for $edge in: $created" >&2; exit 1; }
    mv "/enrol/$edge/token.new" "/enrol/$edge/token"
    echo "$edge registered; it enrols with its token on first start"
  fi
done

if [ ! -f /enrol/admin-created ] && [ -n "${LATCHKEY_ADMIN_PASSWORD:-}" ]; then
  latchkey-control admin create --username admin
  touch /enrol/admin-created
fi
