#!/usr/bin/env bash
# The test command: every crate's unit, integration and property tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --workspace --locked
