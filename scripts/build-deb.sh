#!/usr/bin/env bash
# Build the Debian package: release binary, man page generated from it,
# then cargo-deb (installed with `cargo install cargo-deb --locked` if
# missing). Prints the path of the .deb as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup)"; exit 1; }
command -v dpkg-deb >/dev/null || { echo "dpkg-deb not found: build on Debian/Ubuntu (apt-get install dpkg-dev)"; exit 1; }
if ! command -v cargo-deb >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deb" ]; then
    echo "build-deb: installing cargo-deb"
    cargo install cargo-deb --locked
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

cargo build --release --locked
target_dir=${CARGO_TARGET_DIR:-target}
release="$target_dir/release"
# The man page comes from the clap definitions of the binary just built.
"$release/cloudstack-ovn" generate man > "$release/cloudstack-ovn.1"
gzip -9 -n -f "$release/cloudstack-ovn.1"
cargo deb --no-build --locked --output "$target_dir/debian/" >/dev/null
ls -1t "$target_dir"/debian/cloudstack-ovn_*.deb | head -1
