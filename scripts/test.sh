#!/usr/bin/env bash
# The test suite: installs prerequisites, checks formatting and lints, then
# runs every test against real OVN processes (unit, NB integration,
# ovn-trace and data-plane tests), then builds and checks the Debian package
# (scripts/build-deb.sh, scripts/check-deb.sh). Tests that need OVN fail,
# never skip, when it is missing. Ends with one summary line
# "tests: N passed, M failed"; exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup)" >&2; exit 1; }
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
passed=$(grep -oE 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
# The Debian package: built (release build + cargo-deb, installed if
# missing), unpacked and run like CloudStack runs it. Each "PASS deb:" line
# counts as a passed test; a failure counts as one failed test.
deb_log=$(mktemp)
trap 'rm -f "$log" "$deb_log"' EXIT
deb_status=0
{ scripts/build-deb.sh && scripts/check-deb.sh; } >"$deb_log" 2>&1 || deb_status=$?
cat "$deb_log"
passed=$((passed + $(grep -c '^PASS deb:' "$deb_log" || true)))
if [ "$deb_status" -ne 0 ]; then
    failed=$((failed + 1))
    [ "$status" -ne 0 ] || status=$deb_status
fi
echo "tests: $passed passed, $failed failed"
exit "$status"
