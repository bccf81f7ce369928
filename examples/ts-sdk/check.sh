#!/usr/bin/env bash
# Is schema/openrpc.json fit for generators? Generates the TypeScript client with
# @open-rpc/generator into a temporary directory (nothing generated is committed), compiles it
# with tsc --strict together with session.ts, and runs that session against a live server.
#   bash examples/ts-sdk/check.sh http://127.0.0.1:8080/ KEY
# Needs `npm ci` in examples/ts-sdk first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
url=${1:?usage: check.sh URL KEY}
key=${2:?usage: check.sh URL KEY}
bin="$here/node_modules/.bin"

gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT

# The generator warns about `"type": [..., "null"]`; show its output only when it fails.
if ! "$bin/open-rpc-generator" generate -t client -l typescript -n hookrpc \
  -d "$here/../../schema/openrpc.json" -o "$gen" >"$gen/generator.log" 2>&1 ||
  [ ! -f "$gen/client/typescript/src/index.ts" ]; then
  cat "$gen/generator.log"
  echo "@open-rpc/generator failed"
  exit 1
fi
echo "ok   @open-rpc/generator $(node -p "require('$here/node_modules/@open-rpc/generator/package.json').version"): client/typescript/src/index.ts, $(wc -l <"$gen/client/typescript/src/index.ts") lines"

cp "$here/session.ts" "$here/tsconfig.json" "$gen/"
ln -s "$here/node_modules" "$gen/node_modules"
(cd "$gen" && "$bin/tsc" -p tsconfig.json)
echo "ok   tsc $("$bin/tsc" --version | sed 's/^Version //') --strict: the generated client and session.ts compile"

node "$gen/build/session.js" "$url" "$key"
