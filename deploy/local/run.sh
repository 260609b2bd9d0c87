#!/usr/bin/env bash
# Runs Latchkey locally with demo data: the control plane (admin API, snapshot
# publisher, edge link) on PostgreSQL with demo licenses, and two edges
# answering the client API, connected to control over QUIC. Ctrl-C stops
# everything it started.
# PostgreSQL: DATABASE_URL, else the server at LATCHKEY_PG_SERVER, else a
# private cluster this script starts (and stops) under .data/pg.
set -euo pipefail
cd "$(dirname "$0")/../.."

data=.data
mkdir -p "$data/keys"
# Without DATABASE_URL or LATCHKEY_PG_SERVER, a private cluster in .data/pg
# (deploy/local/postgres.sh); stopped on exit only if this run started it.
private_pg=
stop_private_pg() { if [ -n "$private_pg" ]; then deploy/local/postgres.sh stop || true; fi; }
if [ -z "${DATABASE_URL:-}" ] && [ -z "${LATCHKEY_PG_SERVER:-}" ]; then
  deploy/local/postgres.sh status >/dev/null || private_pg=1
  LATCHKEY_PG_SERVER=$(deploy/local/postgres.sh start)
  trap stop_private_pg EXIT
fi
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

echo "== building latchkey-control, latchkey-edge and latchkey-client (the first build compiles every dependency and takes several minutes; later runs seconds)"
cargo build --bin latchkey-control --bin latchkey-edge --bin latchkey-client
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

# The demo lines below change what they touch (a seat, a session, a
# suspension), so each run picks its keys by the state they are in now: a
# full license no run has used yet, and a suspended one.
# $1: a condition on licenses l. Prints the first demo key (file order) of a
# license meeting it, found by its first group where that group is unique.
demo_key() {
  local prefixes
  prefixes=$(psql "$DATABASE_URL" -tAc "SELECT key_prefix FROM licenses l WHERE ($1)
      AND (SELECT count(*) FROM licenses m WHERE m.key_prefix = l.key_prefix) = 1" | tr '\n' ' ')
  awk -v prefixes="$prefixes" 'BEGIN { n = split(prefixes, p, " "); for (i = 1; i <= n; i++) fresh[p[i]] = 1 }
      substr($1, 1, 5) in fresh { print $1; exit }' "$data/demo-licenses.txt"
}
key=$(demo_key "l.status = 'active' AND l.kind = 'full' AND l.valid_until > now()
    AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.license_id = l.id)
    AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.license_id = l.id)")
if [ -z "$key" ]; then
  echo "every demo license has been used by an earlier run: stop, remove $data (and the database $db_name) for fresh ones" >&2
  exit 1
fi
suspended=$(demo_key "l.status = 'suspended'")
# Another fresh one for the client library's command.
client_key=$(demo_key "l.status = 'active' AND l.kind = 'full' AND l.valid_until > now()
    AND l.key_prefix <> '${key:0:5}'
    AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.license_id = l.id)
    AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.license_id = l.id)")
# An idempotency key of this run's own: a retry within the run takes one seat.
idempotency_key="demo-$(date +%s)"

link_addr="${LATCHKEY_LINK_LISTEN_ADDR:-127.0.0.1:7443}"
export LATCHKEY_LINK_LISTEN_ADDR="$link_addr" LATCHKEY_LINK_DIR="$data/link"
for edge in edge-1 edge-2; do
  # A one-time enrolment token per edge; once enrolled, the edge's own
  # identity in $data/<edge>/ is what control knows it by.
  if [ ! -f "$data/$edge.token" ]; then
    "$bin/latchkey-control" edges create --name "$edge" | awk '/token/ {print $NF}' > "$data/$edge.token"
  fi
done

pids=()
stop_all() {
  # A second Ctrl-C (or timeout's signal to the whole group) must not cut
  # the cleanup short and leave PostgreSQL running.
  trap '' INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_private_pg
}
trap stop_all EXIT
trap 'exit 130' INT TERM

"$bin/latchkey-control" serve > "$data/control.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -f "$data/link/link-cert.pem" ] && break; sleep 0.1; done
edge_addrs=("${LATCHKEY_EDGE_LISTEN:-127.0.0.1:8443}" "${LATCHKEY_EDGE2_LISTEN:-127.0.0.1:8444}")
for n in 1 2; do
  "$bin/latchkey-edge" serve --control "$link_addr" --control-cert "$data/link/link-cert.pem" \
    --data-dir "$data/edge-$n" --name "edge-$n" --enrol-token-file "$data/edge-$n.token" \
    --trusted-key "$public" --listen "${edge_addrs[$((n - 1))]}" > "$data/edge-$n.log" 2>&1 &
  pids+=($!)
done
for addr in "${edge_addrs[@]}"; do
  ready=
  for _ in $(seq 1 300); do curl -sf "http://$addr/readyz" >/dev/null && { ready=1; break; }; sleep 0.1; done
  [ -n "$ready" ] || echo "the edge on $addr is not ready after 30 s (no snapshot from control yet); see its log in $data/" >&2
done
edge1="http://${edge_addrs[0]}"; edge2="http://${edge_addrs[1]}"
license_id=$(psql "$DATABASE_URL" -tAc "SELECT id FROM licenses WHERE key_prefix = '${key:0:5}' LIMIT 1")
machine='{"system_uuid":"4c4c4544-0042-3510-8052-b2c04f4e3232","cpu_id":"BFEBFBFF000906EA","macs":["a4:bb:6d:12:34:56"]}'

api="http://$LATCHKEY_LISTEN_ADDR/admin/api/v1"
cat <<TRY

Latchkey is running: control on http://$LATCHKEY_LISTEN_ADDR (edge link on $link_addr, QUIC),
edges on $edge1 and $edge2. Logs: $data/control.log, $data/edge-1.log, $data/edge-2.log.
Ctrl-C stops everything this started.
Demo license keys (key, kind, state): $data/demo-licenses.txt
Admin API key: $api_key
Admin panel: http://$LATCHKEY_LISTEN_ADDR/ (login in $data/admin-login.txt)

Try the client API from another terminal (either edge answers; changes go through control):
  curl -s -X POST $edge1/api/license/activate -H 'content-type: application/json' \
      -d '{"license_key":"$key","fingerprint":$machine,"idempotency_key":"$idempotency_key"}'
  curl -s -X POST $edge2/api/license/verify -H 'content-type: application/json' \
      -d '{"license_key":"$key","fingerprint":$machine,"product":"studio","app_version":"2.4.0","feature":"sync"}'
  curl -s -X POST $edge1/api/license/session/start -H 'content-type: application/json' \
      -d '{"license_key":"$key","fingerprint":$machine}'
  curl -s -X POST $edge2/api/license/verify -H 'content-type: application/json' \
      -d '{"license_key":"$suspended"}'
  curl -s -X POST $edge1/api/version/check -H 'content-type: application/json' \
      -d '{"product":"studio","version":"1.9.0"}'
  curl -s $edge1/metrics | grep ^latchkey_edge

and the admin API on control (a suspension reaches both edges in milliseconds):
  TOKEN=\$(curl -s -X POST $api/auth/token -H 'content-type: application/json' \\
      -d '{"api_key":"$api_key"}' | sed 's/.*"access_token":"\\([^"]*\\)".*/\\1/')
  curl -s -X POST $api/licenses/$license_id/suspend -H "authorization: Bearer \$TOKEN"
  curl -s -X POST $edge2/api/license/verify -H 'content-type: application/json' -d '{"license_key":"$key"}'
  curl -s $api/openapi.json | head -c 300
  # every change is in the audit log, with the request id of the call:
  psql "$DATABASE_URL" -c 'SELECT at, request_id, action, entity_kind FROM audit_log ORDER BY id DESC LIMIT 5'
  # usage from the edges lands in the monthly partitions:
  psql "$DATABASE_URL" -c 'SELECT kind, sum(count) FROM license_heartbeats GROUP BY kind'
TRY
if [ -n "$client_key" ]; then
  cat <<CLIENT

and as an application does it, with the client library's command (this machine's
fingerprint, answers believed only when an edge signed them, the lease cached):
  client="$bin/latchkey-client --edge $edge1 --edge $edge2 --public-key $public --product studio --lease-file $data/client-${client_key:0:5}.lease"
  \$client activate --key $client_key
  \$client verify --key $client_key
  \$client session --key $client_key    # a heartbeat a line; Ctrl-C ends the session
  \$client lease show
CLIENT
fi
echo
wait -n "${pids[@]}"
echo "a process stopped; see the logs in $data/" >&2
