#!/usr/bin/env bash
# Runs every registered experiment with full settings and writes one JSON line per experiment
# to results.jsonl (or $1), then prints a markdown table of the contract fields.
# Usage: [MODEL=DIR] scripts/results.sh [OUT.jsonl] [--data MNIST_DIR]
# distill-minilm runs only when MODEL names an all-MiniLM-L6-v2 directory (it is skipped otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results.jsonl}
shift || true
cargo build -q --release -p netcompress-cli
bin=target/release/netcompress
: > "$out"
for name in $($bin experiment --list | awk '{print $1}'); do
  if [ "$name" = distill-minilm ]; then
    if [ -z "${MODEL:-}" ]; then
      echo "skipping $name (set MODEL=DIR to run it)" >&2
      continue
    fi
    echo "running $name" >&2
    $bin experiment "$name" --model "$MODEL" --json 2>/dev/null | tail -n 1 >> "$out"
    continue
  fi
  echo "running $name" >&2
  $bin experiment "$name" --json "$@" 2>/dev/null | tail -n 1 >> "$out"
done
python3 - "$out" <<'PY'
import json, sys
# control: the f32 baseline fine-tuned like the compressed model (experiments that fine-tune);
# +- is the standard error over seeds where the experiment reports it.
print("| experiment | baseline acc | control acc | compressed acc | vs better of base/control (points) | params | nonzero | bytes (base -> comp) | MACs (base -> comp) |")
print("|---|---|---|---|---|---|---|---|---|")
def acc(r, side):
    s = r["extra"].get("accuracy", {}).get(side) if isinstance(r["extra"].get("accuracy"), dict) else None
    m = r.get(side)
    if m is None:
        return "-"
    if s and len(s["per_seed"]) > 1:
        return f"{s['mean']*100:.2f} +- {s['std_error']*100:.2f}%"
    return f"{m['accuracy']*100:.2f}%"
for line in open(sys.argv[1]):
    r = json.loads(line)
    b, c = r["baseline"], r["compressed"]
    k = r.get("control")
    v = r["extra"].get("vs_reference_points")
    ref = max(b["accuracy"], k["accuracy"]) if k else b["accuracy"]
    vs = f"{v['mean']:+.2f} +- {v['std_error']:.2f}" if v else f"{(c['accuracy'] - ref)*100:+.2f}"
    print(f"| {r['experiment']} | {acc(r, 'baseline')} | {acc(r, 'control')} | {acc(r, 'compressed')} | {vs} | {c['params']} | {c['nonzero']} | {b['bytes']} -> {c['bytes']} ({b['bytes']/max(c['bytes'],1):.2f}x) | {b['macs']} -> {c['macs']} ({b['macs']/max(c['macs'],1):.2f}x) |")
PY
