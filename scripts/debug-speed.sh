#!/usr/bin/env bash
# Times the downstream crate's `debug_speed` example as a user's debug build runs it: the
# user's crate at opt-level 0, the netcompress crates (and every other dependency) at
# opt-level 3, which is what `[profile.dev.package."*"] opt-level = 3` gives a user.
# Usage: scripts/debug-speed.sh   (builds into target/debug-speed, prints the timings)
set -euo pipefail
cd "$(dirname "$0")/.."
args=(--config 'profile.dev.opt-level=0')
for c in compress-core compress-nn compress-prune compress-quant compress-distill \
  compress-arch compress-dynamic netcompress; do
  args+=(--config "profile.dev.package.$c.opt-level=3")
done
CARGO_TARGET_DIR=target/debug-speed cargo run -q "${args[@]}" \
  -p netcompress-downstream --example debug_speed
