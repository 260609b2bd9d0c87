#!/usr/bin/env bash
# A private PostgreSQL cluster for the local run, so it needs no server set
# up beforehand and touches none that exists: data in .data/pg, listening on
# 127.0.0.1 only (no Unix socket, so no shared socket folder), trust
# authentication, port LATCHKEY_PG_PORT (default 5499; 5432 is left to a
# system server).
#
#   postgres.sh start    create the cluster the first time, start it unless
#                        running; prints its URL (a DATABASE_URL) on stdout
#   postgres.sh status   prints the URL and succeeds only when it is running
#   postgres.sh stop     stops it if running
#
# initdb and the server refuse to run as root: as root they run as the
# `postgres` user, which then owns .data/pg.
set -euo pipefail
cd "$(dirname "$0")/../.."

dir="$PWD/.data/pg"
port="${LATCHKEY_PG_PORT:-5499}"

say() { echo "postgres.sh: $*" >&2; }

# The binaries of the cluster's version once it exists (a newer server
# cannot open it), else the newest installed; PATH as a last resort.
bin_dir() {
  local version
  if [ -f "$dir/PG_VERSION" ] && version=$(cat "$dir/PG_VERSION") \
    && [ -x "/usr/lib/postgresql/$version/bin/pg_ctl" ]; then
    echo "/usr/lib/postgresql/$version/bin"
    return
  fi
  local newest
  newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [ -n "$newest" ] && [ -x "$newest/initdb" ]; then
    echo "$newest"
  elif command -v initdb >/dev/null; then
    dirname "$(command -v initdb)"
  else
    say "no initdb found (install the PostgreSQL server package, or set DATABASE_URL)"
    exit 1
  fi
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# The port of the running server, from its pid file (line 4).
running_port() {
  as_owner "$(bin_dir)/pg_ctl" -D "$dir" status >/dev/null 2>&1 || return 1
  sed -n 4p "$dir/postmaster.pid"
}

url() { echo "postgres://postgres@127.0.0.1:$1/postgres"; }

create() {
  if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
      say "running as root needs a 'postgres' user to own the cluster (initdb refuses root)"
      exit 1
    fi
    mkdir -p "$dir"
    # .data keeps secrets in 0600 files; the postgres user only needs to
    # pass through it to reach its own folder.
    chmod o+x "$PWD/.data"
    chown postgres: "$dir"
  else
    mkdir -p "$dir"
  fi
  chmod 700 "$dir"
  if ! as_owner test -w "$dir"; then
    say "the postgres user cannot reach $dir: make its parent folders traversable (chmod o+x)"
    exit 1
  fi
  say "creating a private cluster in $dir"
  as_owner "$(bin_dir)/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C \
    >"$dir.init.log" 2>&1 || {
    cat "$dir.init.log" >&2
    exit 1
  }
  cat >>"$dir/postgresql.conf" <<'CONF'

# latchkey deploy/local/postgres.sh: reachable from this machine only.
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
CONF
}

start() {
  local current
  if current=$(running_port); then
    say "already running on 127.0.0.1:$current"
    url "$current"
    return
  fi
  if [ "$port" = 5432 ]; then
    say "LATCHKEY_PG_PORT=5432 is the system server's port; pick another"
    exit 1
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    say "port $port is taken; set LATCHKEY_PG_PORT to a free one"
    exit 1
  fi
  [ -f "$dir/PG_VERSION" ] || create
  as_owner "$(bin_dir)/pg_ctl" -D "$dir" -l "$dir/server.log" -o "-p $port" -w start >/dev/null || {
    tail -n 20 "$dir/server.log" >&2
    exit 1
  }
  say "started on 127.0.0.1:$port (log: $dir/server.log)"
  url "$port"
}

stop() {
  if running_port >/dev/null; then
    as_owner "$(bin_dir)/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    say "stopped"
  else
    say "not running"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    current=$(running_port) || exit 3
    url "$current"
    ;;
  *)
    echo "usage: $0 start|status|stop" >&2
    exit 2
    ;;
esac
