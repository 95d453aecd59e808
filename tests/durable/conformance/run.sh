#!/usr/bin/env bash
# Runs the Durable Streams conformance suite against a server that is
# already running, with vitest's default reporter, for iterating by hand:
#
#   tests/durable/conformance/run.sh http://127.0.0.1:PORT [REGEX]
#
# REGEX, if given, goes to vitest as `-t REGEX` (a test runs when its full
# name matches). The server's long-poll timeout should be 2 s, as in
# `cargo test --test durable` (`ssehub --long-poll-timeout 2`).
set -euo pipefail
cd "$(dirname "$0")"
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 http://127.0.0.1:PORT [vitest -t regex]" >&2
    exit 2
fi
if [ ! -d node_modules ]; then
    echo "node_modules is missing: run 'npm ci' in $(pwd) (bash .ci/run does)" >&2
    exit 2
fi
filter=()
if [ $# -eq 2 ]; then filter=(-t "$2"); fi
CONFORMANCE_TEST_URL="$1" CONFORMANCE_LONG_POLL_MS="${CONFORMANCE_LONG_POLL_MS:-2000}" \
    exec npx vitest run "${filter[@]}"
