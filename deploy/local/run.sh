#!/usr/bin/env bash
# Runs Latchkey locally with demo data: the control plane's admin API on
# PostgreSQL with demo licenses, and an edge answering the client API from a
# signed snapshot exported from it. Ctrl-C stops both. (Until the QUIC link
# exists, the edge learns of changes when the snapshot file is re-exported.)
set -euo pipefail
cd "$(dirname "$0")/../.."

data=.data
mkdir -p "$data/keys"
server_url="${LATCHKEY_PG_SERVER:-postgres://postgres@127.0.0.1:5432/postgres}"
export DATABASE_URL="${DATABASE_URL:-${server_url%/*}/latchkey_demo}"
export LATCHKEY_LISTEN_ADDR="${LATCHKEY_LISTEN_ADDR:-127.0.0.1:8080}"

if ! pg_isready -q -d "$server_url"; then
  echo "PostgreSQL is not reachable at $server_url (set LATCHKEY_PG_SERVER or DATABASE_URL)" >&2
  exit 1
fi
if [ ! -f "$data/secrets.env" ]; then
  umask 077
  printf 'SECRET_KEY=%s\nJWT_SECRET=%s\n' "$(head -c 48 /dev/urandom | base64 -w0)" "$(head -c 48 /dev/urandom | base64 -w0)" > "$data/secrets.env"
fi
set -a; . "$data/secrets.env"; set +a

cargo build --quiet --bin latchkey-control --bin latchkey-edge
bin=target/debug

private=$(ls "$data"/keys/signing-*.pem 2>/dev/null | grep -v '\.pub\.pem$' | head -n1 || true)
if [ -z "$private" ]; then
  "$bin/latchkey-control" keys generate --out "$data/keys" >/dev/null
  private=$(ls "$data"/keys/signing-*.pem | grep -v '\.pub\.pem$' | head -n1)
fi
public="${private%.pem}.pub.pem"
export LATCHKEY_SIGNING_KEY_PATH="$private"

db_name="${DATABASE_URL##*/}"; db_name="${db_name%%\?*}"
if [ "$(psql "$server_url" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db_name'")" != 1 ]; then
  psql "$server_url" -qc "CREATE DATABASE \"$db_name\""
  echo "== seeding demo data into $db_name"
  "$bin/latchkey-control" demo seed --licenses 100 > "$data/demo-licenses.txt"
  "$bin/latchkey-control" api-keys create --name demo > "$data/api-key.txt"
fi
if [ ! -f "$data/admin-login.txt" ]; then
  admin_password=$(head -c 18 /dev/urandom | base64 -w0 | tr '+/' '-_')
  LATCHKEY_ADMIN_PASSWORD="$admin_password" "$bin/latchkey-control" admin create --username admin >/dev/null
  (umask 077; printf 'username: admin\npassword: %s\n' "$admin_password" > "$data/admin-login.txt")
fi
api_key=$(awk '{print $NF}' "$data/api-key.txt")
key=$(head -n1 "$data/demo-licenses.txt" | awk '{print $1}')

echo "== control: a signed full snapshot of the database"
"$bin/latchkey-control" snapshot export --out "$data/snapshot.bin"
echo "== edge: verify it as an edge does at start, and look a demo license up"
"$bin/latchkey-edge" inspect --snapshot "$data/snapshot.bin" --trusted-key "$public" --key "$key"

edge_addr="${LATCHKEY_EDGE_LISTEN:-127.0.0.1:8443}"
"$bin/latchkey-edge" serve --snapshot "$data/snapshot.bin" --trusted-key "$public" --listen "$edge_addr" \
  > "$data/edge.log" 2>&1 &
edge_pid=$!
trap 'kill "$edge_pid" 2>/dev/null; wait "$edge_pid" 2>/dev/null' EXIT
suspended=$(grep -m1 ' suspended$' "$data/demo-licenses.txt" | awk '{print $1}')

api="http://$LATCHKEY_LISTEN_ADDR/admin/api/v1"
cat <<TRY

Latchkey control is starting on http://$LATCHKEY_LISTEN_ADDR, an edge on http://$edge_addr
(log in $data/edge.log). Ctrl-C stops both.
Demo license keys (key, kind, state): $data/demo-licenses.txt
Admin API key: $api_key
Admin panel: http://$LATCHKEY_LISTEN_ADDR/ (login in $data/admin-login.txt)

Try the client API on the edge from another terminal:
  curl -s -X POST http://$edge_addr/api/license/verify -H 'content-type: application/json' \
      -d '{"license_key":"$key","product":"studio","app_version":"2.4.0","feature":"sync"}'
  curl -s -X POST http://$edge_addr/api/license/verify -H 'content-type: application/json' \
      -d '{"license_key":"$suspended"}'
  curl -s -X POST http://$edge_addr/api/version/check -H 'content-type: application/json' \
      -d '{"product":"studio","version":"1.9.0"}'
  curl -s http://$edge_addr/metrics | grep ^latchkey_edge

and the admin API on control:
  TOKEN=\$(curl -s -X POST $api/auth/token -H 'content-type: application/json' \\
      -d '{"api_key":"$api_key"}' | sed 's/.*"access_token":"\\([^"]*\\)".*/\\1/')
  curl -s $api/customers -H "authorization: Bearer \$TOKEN"
  curl -s -X POST $api/customers -H "authorization: Bearer \$TOKEN" \\
      -H 'content-type: application/json' -d '{"name":"Acme"}'
  curl -s $api/openapi.json | head -c 300
  # every change is in the audit log, with the request id of the call:
  psql "$DATABASE_URL" -c 'SELECT at, request_id, action, entity_kind FROM audit_log ORDER BY id DESC LIMIT 5'

TRY
"$bin/latchkey-control" serve
