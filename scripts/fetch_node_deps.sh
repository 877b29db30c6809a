#!/usr/bin/env bash
# Fetch the official OpenAI Node client used by the server tests (tests/server_*.mjs) and the load
# generator (bench/loadgen.mjs) from the npm registry. Pinned by version and checked by the
# tarball's sha256; unpacked into .cache/node/node_modules/openai (ignored by git: never
# committed). openai 5.x has no runtime dependencies (ws and zod are optional peers, unused).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/.cache/node/node_modules/openai
pkg=openai@5.23.2
tgz_sha256=a2aa74ff8be1a80a215af201a3d2228e999464d166c1eaec2c9ca313395fbef1

# installed and complete: the stamp holds the tarball's checksum, written last
if [ "$(cat "$dest/.vlrun-sha256" 2>/dev/null)" = "$tgz_sha256" ]; then
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
tgz=$(ls "$tmp"/*.tgz)
echo "$tgz_sha256  $tgz" | sha256sum -c --quiet || { echo "fetch_node_deps: $pkg: sha256 mismatch" >&2; exit 1; }
mkdir -p "$tmp/unpacked"
tar -xzf "$tgz" -C "$tmp/unpacked"
echo "$tgz_sha256" >"$tmp/unpacked/package/.vlrun-sha256"
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$tmp/unpacked/package" "$dest"
echo "fetch_node_deps: $pkg -> $dest"
