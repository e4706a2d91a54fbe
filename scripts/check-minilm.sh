#!/usr/bin/env bash
# Checks our all-MiniLM-L6-v2 embeddings against Hugging Face transformers on every
# sentence of the shipped sentence file (cosine >= 0.99999 each).
#
# Usage: scripts/check-minilm.sh   (PYTHON=... a Python with torch, transformers, safetensors)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
export MINILM_DIR="${MINILM_DIR:-$ROOT/models/all-MiniLM-L6-v2}"
export MINILM_REF="${MINILM_REF:-$ROOT/models/minilm-reference.safetensors}"
PYTHON="$PYTHON" "$ROOT/scripts/fetch-minilm.sh" "$MINILM_DIR"
"$PYTHON" "$ROOT/scripts/minilm_reference.py" "$MINILM_DIR" \
  "$ROOT/crates/compress-transformer/data/sentences.txt" "$MINILM_REF"
cd "$ROOT"
cargo test -p compress-transformer --test integration minilm -- --ignored --nocapture
