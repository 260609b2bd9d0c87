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

cargo test --workspace --locked
