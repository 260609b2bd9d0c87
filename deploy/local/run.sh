#!/usr/bin/env bash
# Runs Latchkey locally with demo data: what exists of the system today.
# Later issues grow this into the whole stack (control, two edges, PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/../.."

data=.data
mkdir -p "$data/keys"
cargo build --quiet --bin latchkey-control --bin latchkey-edge
bin=target/debug

private=$(ls "$data"/keys/signing-*[0-9a-f].pem 2>/dev/null | grep -v '\.pub\.pem$' | head -n1 || true)
if [ -z "$private" ]; then
  "$bin/latchkey-control" keys generate --out "$data/keys"
  private=$(ls "$data"/keys/signing-*.pem | grep -v '\.pub\.pem$' | head -n1)
fi
public="${private%.pem}.pub.pem"

echo
echo "== control: a signed snapshot of 1000 demo licenses"
"$bin/latchkey-control" demo snapshot --signing-key "$private" --out "$data/snapshot.bin" --licenses 1000 | tee "$data/demo.txt"
key=$(grep -m1 '^demo license' "$data/demo.txt" | awk '{print $3}')

echo
echo "== edge: verify the snapshot as an edge does at start, and look a license up"
"$bin/latchkey-edge" inspect --snapshot "$data/snapshot.bin" --trusted-key "$public" --key "$key"

cat <<TRY

Try it yourself:
  $bin/latchkey-edge inspect --snapshot $data/snapshot.bin --trusted-key $public --key '$key'
  # tamper with one byte and watch the edge refuse it:
  cp $data/snapshot.bin /tmp/tampered.bin && printf 'X' | dd of=/tmp/tampered.bin bs=1 seek=500 conv=notrunc 2>/dev/null
  $bin/latchkey-edge inspect --snapshot /tmp/tampered.bin --trusted-key $public
TRY
