#!/usr/bin/env bash
# The test suite: installs prerequisites, checks formatting and lints, then
# runs every test against real OVN processes (unit, NB integration,
# ovn-trace and data-plane tests). Tests that need OVN fail, never skip,
# when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup)" >&2; exit 1; }
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked "$@"
