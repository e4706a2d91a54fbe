#!/usr/bin/env bash
# Runs every registered experiment with full settings and writes one JSON line per experiment
# to results.jsonl (or $1), then prints a markdown table of the contract fields.
# Usage: scripts/results.sh [OUT.jsonl] [--data MNIST_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results.jsonl}
shift || true
cargo build -q --release -p netcompress-cli
bin=target/release/netcompress
: > "$out"
for name in $($bin experiment --list | awk '{print $1}'); do
  echo "running $name" >&2
  $bin experiment "$name" --json "$@" 2>/dev/null | tail -n 1 >> "$out"
done
python3 - "$out" <<'PY'
import json, sys
print("| experiment | baseline acc | compressed acc | params | nonzero | bytes (base -> comp) | MACs (base -> comp) |")
print("|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    b, c = r["baseline"], r["compressed"]
    print(f"| {r['experiment']} | {b['accuracy']*100:.2f}% | {c['accuracy']*100:.2f}% | {c['params']} | {c['nonzero']} | {b['bytes']} -> {c['bytes']} ({b['bytes']/max(c['bytes'],1):.2f}x) | {b['macs']} -> {c['macs']} ({b['macs']/max(c['macs'],1):.2f}x) |")
PY
