#!/usr/bin/env bash
# The test command: every crate's unit, integration and property tests.
# Database tests use the PostgreSQL at DATABASE_URL (default: the local
# server on 127.0.0.1:5432, user postgres); each test gets a fresh database.
set -euo pipefail
cd "$(dirname "$0")/../.."

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! pg_isready -q -d "$DATABASE_URL" 2>/dev/null; then
  # This machine's own cluster, if it has one and it stopped.
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 30); do pg_isready -q -d "$DATABASE_URL" && break; sleep 1; done
  fi
fi
pg_isready -q -d "$DATABASE_URL" || { echo "PostgreSQL is not reachable at DATABASE_URL" >&2; exit 1; }

# The panel's login-guard tests also run against Redis at REDIS_URL (default
# the local server); installed with apt-get when missing (as root), started
# when stopped.
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
if ! command -v redis-server >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
fi
if command -v redis-cli >/dev/null && ! redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null; then
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' >/dev/null
    for _ in $(seq 20); do redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 && break; sleep 0.5; done
  fi
fi

# The panel's browser tests drive headless Chromium through chromedriver and
# fail (not skip) without them; install them on a fresh Debian machine.
if [ ! -x /usr/bin/chromedriver ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  else
    echo "chromedriver is missing: install the chromium and chromium-driver packages" >&2
  fi
fi

# Both OpenAPI conformance tests (control/tests/openapi_conformance.rs and
# edge/tests/openapi_conformance.rs) run schemathesis and fail (not skip)
# without it: installed with pip when missing, into a virtualenv under
# target/ (a system Python may refuse packages of its own, PEP 668).
if ! command -v schemathesis >/dev/null; then
  tools="$PWD/target/python-tools"
  if [ ! -x "$tools/bin/schemathesis" ]; then
    if ! python3 -m venv "$tools" 2>/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
      rm -rf "$tools" && python3 -m venv "$tools"
    fi
    "$tools/bin/pip" install --quiet 'schemathesis>=4.32,<5' ||
      echo "schemathesis could not be installed: pip install 'schemathesis>=4.32,<5'" >&2
  fi
  export PATH="$tools/bin:$PATH"
fi

cargo test --workspace --locked
