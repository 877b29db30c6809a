#!/usr/bin/env bash
# server_node.sh SCRIPT.mjs [ARGS...]: runs one node client test of `vlrun serve`
# (tests/server_*.mjs) with a bounded time. Skips (77, ctest's SKIP_RETURN_CODE) when node or
# the openai client (scripts/fetch_node_deps.sh, run by scripts/setup.sh) is absent.
set -u
: "${VLRUN:?}" "${VL_FIXTURES:?}" "${VL_TOKENIZER_DIR:?}"
here=$(cd "$(dirname "$0")" && pwd)
modules=${VL_NODE_MODULES:-$here/../.cache/node/node_modules}
if ! command -v node >/dev/null 2>&1; then
    echo "SKIP: node is not installed (scripts/setup.sh installs it)"
    exit 77
fi
if [ ! -f "$modules/openai/index.mjs" ]; then
    echo "SKIP: $modules/openai absent (scripts/fetch_node_deps.sh)"
    exit 77
fi
export VL_NODE_MODULES=$modules
script=$1
shift
# the script bounds every wait itself; this is the backstop for a hung client or server
exec timeout -k 5 "${VL_NODE_TIMEOUT:-120}" node "$here/$script" "$@"
