#!/usr/bin/env bash
# Calibrated quantization of all-MiniLM-L6-v2 with every method, then `netcompress eval`
# of each compressed directory against the original. Held out: `quantize` calibrates on the
# calibration half of the shipped sentence file (lines 1-150, the `--calib` default) and
# `eval` measures on the evaluation half (lines 151-300, the `--file` default), so no
# figure is measured on a sentence its calibration saw.
# Usage: scripts/calibrated-figures.sh [MODEL_DIR] [OUT_DIR]   (prints one JSON line per run)
# The ONNX Runtime int8 rows beside W8A8 (same held-out sentences and metrics):
#   python benches/peers/accuracy.py MODEL_DIR   (packages: benches/peers/requirements.txt)
set -euo pipefail
M=${1:-models/all-MiniLM-L6-v2}
OUT=${2:-target/calibrated-figures}
NC=${NC:-target/release/netcompress}
mkdir -p "$OUT"
run() {
    local name=$1; shift
    rm -rf "${OUT:?}/$name"
    "$NC" quantize "$M" "$OUT/$name" "$@" --json | tail -1 > "$OUT/$name.quantize.json"
    "$NC" eval "$OUT/$name" --against "$M" --json | tail -1 | sed "s/^{/{\"run\":\"$name\",/"
}
for bits in 4 3; do
    for method in rtn gptq awq; do
        run "$method-int$bits-g128" --method "$method" --bits "$bits" --group-size 128
    done
done
run smoothquant-w8a8 --method smoothquant --bits 8
run gptq-mixed-3-4-8-g128 --method gptq --bits 4 --group-size 128 --mixed-bits 3,8
run rtn-mixed-3-4-8-g128 --method rtn --bits 4 --group-size 128 --mixed-bits 3,8
