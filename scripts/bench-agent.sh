#!/usr/bin/env bash
# The host agent at scale (docs/performance.md, "Host agent"): a benchmark,
# not part of `cargo test` (a `test = false` target in Cargo.toml; it takes
# minutes).
# BENCH_PORTS (NB size, default 100000), BENCH_LOCAL (NICs bound when the
# agent starts, default 50) and BENCH_VMS (VMs on the host, default 200).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec cargo test --release --locked -q --test agent_bench
