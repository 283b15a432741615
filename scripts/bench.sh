#!/usr/bin/env bash
# The scale benchmark (not part of the test suite: it takes minutes).
# Builds the release binary and runs scripts/bench.py against a private NB;
# arguments are passed on (--networks 10000 --ports 100000 --runs 300 ...).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v /usr/bin/time >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
cargo build --release --locked -q
exec python3 scripts/bench.py "$@"
