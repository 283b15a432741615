#!/usr/bin/env bash
# Install what the tests and the sandbox need on a fresh Debian machine:
# OVN central + host (ovsdb-server, ovn-northd, ovn-controller, ovn-nbctl,
# ovn-trace), Open vSwitch (ovs-vswitchd), the VM-namespace tools, and the
# guest-side clients of the metadata tests (cloud-init's own CloudStack
# datasource, curl, wget). The agent itself needs neither `ip` nor
# `ovs-vsctl` (netlink, OVSDB); the tests use both, and `ethtool`.
# Idempotent; does nothing when everything is present. Run as root.
set -euo pipefail
need=(ovsdb-server ovsdb-tool ovsdb-client ovn-nbctl ovn-sbctl ovn-northd ovn-trace ovs-vswitchd ovs-vsctl ovn-controller busybox ethtool ip python3 cloud-init curl wget)
missing=()
for b in "${need[@]}"; do command -v "$b" >/dev/null 2>&1 || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "install-deps: missing ${missing[*]}; installing packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    ovn-central ovn-host ovn-common openvswitch-switch openvswitch-common \
    busybox ethtool iproute2 python3 cloud-init curl wget >/dev/null
# Packages may start daemons through their init scripts on some images; the
# tests start their own, in temp dirs, so nothing else needs to run.
for b in "${need[@]}"; do
    command -v "$b" >/dev/null 2>&1 || { echo "install-deps: $b still missing" >&2; exit 1; }
done
