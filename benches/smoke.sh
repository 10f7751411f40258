#!/usr/bin/env bash
# The load generator's smoke run: every scenario at tiny scale against
# streamgate and the raw-WebSocket ceiling, and against two streamgate nodes
# on one redis-server (streamgate-cluster) when redis-server is on PATH;
# about 20 seconds once built. Exits
# non-zero if any scenario loses a token, sees an error or leaves a stream
# unfinished. For CI (.ci/run calls it); the full runs are not in CI.
# Extra arguments go to the load generator, e.g. `--target node`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench loadgen -- --smoke "$@"
