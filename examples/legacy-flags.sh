#!/usr/bin/env bash
# The legacy `--flag value` style (CloudStack's CLI-argument generation with
# the extension detail vif.binding=lswitch, which adds --nic-uuid).
# Usage: OVN_NB_DB=unix:/path/nb.sock examples/legacy-flags.sh [binary]
set -euo pipefail
B=${1:-cloudstack-ovn}
D=(--physical-network-extension-details '{"physicalnetworkname":"Physical Network 1"}' --network-extension-details '{}')
"$B" ensure-network-device --network-id 43 --vlan 100 --zone-id 1 --current-details '{}' "${D[@]}"
"$B" implement-network --network-id 43 --vlan 100 --gateway 10.2.0.1 --cidr 10.2.0.0/24 --extension-ip 10.2.0.1 "${D[@]}"
"$B" add-dhcp-entry --network-id 43 --mac 02:00:00:00:02:09 --ip 10.2.0.9 --hostname vm-9 --gateway 10.2.0.1 \
    --cidr 10.2.0.0/24 --dns 10.2.0.1 --default-nic true --domain cs.example --extension-ip 10.2.0.1 \
    --nic-uuid 3f0c0000-0000-4000-8000-000000000009 "${D[@]}"
"$B" add-dns-entry --network-id 43 --ip 10.2.0.9 --hostname vm-9 --extension-ip 10.2.0.1 \
    --nic-uuid 3f0c0000-0000-4000-8000-000000000009 "${D[@]}"
