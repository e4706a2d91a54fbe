#!/usr/bin/env bash
# Peak memory and throughput of `netcompress quantize` on a generated 1 GiB checkpoint
# (issue 9's target: under 600 MiB peak RSS, at least 300 MB/s of input on one core).
#
#   bash crates/netcompress-cli/scripts/measure_1gib.sh [WORK_DIR]
#
# The checkpoint (BF16 embeddings and head, F32 attention, F16 MLP, F32 norms, I64 ids) is
# generated in WORK_DIR (default /tmp/netcompress-1gib), never in the repository.
set -euo pipefail
cd "$(dirname "$0")/../../.."
dir=${1:-/tmp/netcompress-1gib}
cargo build --release -p netcompress-cli --bin netcompress --example make_checkpoint
mkdir -p "$dir"
big="$dir/big.safetensors"
[ -f "$big" ] || target/release/examples/make_checkpoint "$big" 1gib
if [ ! -x /usr/bin/time ]; then
  apt-get install -y time >/dev/null
fi
pin=""
command -v taskset >/dev/null && pin="taskset -c 0"
bytes=$(stat -c %s "$big")
cat "$big" >/dev/null # warm the page cache: measure the tool, not the disk
for args in "--bits 8" "--bits 4 --group-size 32"; do
  # shellcheck disable=SC2086
  /usr/bin/time -v $pin target/release/netcompress quantize "$big" "$dir/out.safetensors" $args \
    --force --json >"$dir/out.json" 2>"$dir/time.txt"
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/time.txt")
  cpu=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {print u + s}' "$dir/time.txt")
  secs=$(echo "$wall" | awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }')
  ratio=$(tail -n 1 "$dir/out.json" | sed -E 's/.*"ratio_f32":([0-9.eE+-]+).*/\1/')
  sqnr=$(tail -n 1 "$dir/out.json" | sed -E 's/.*"min_sqnr_db":([0-9.eE+-]+).*/\1/')
  awk -v a="$args" -v b="$bytes" -v r="$rss_kb" -v w="$secs" -v c="$cpu" -v q="$ratio" -v s="$sqnr" 'BEGIN {
    printf "quantize %-24s input %.0f MB: peak RSS %.1f MiB, %.2f s wall (%.0f MB/s), %.2f s CPU (%.0f MB/s), output %.2f%% of f32, min SQNR %.2f dB\n",
      a, b / 1e6, r / 1024, w, b / 1e6 / w, c, b / 1e6 / c, 100 * q, s }'
done
rm -f "$dir/out.safetensors"
