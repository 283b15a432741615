#!/usr/bin/env bash
# The sandbox: a private OVN (NB + SB ovsdb-server and ovn-northd) in a temp
# dir, then a whole network lifecycle driven exactly as CloudStack drives it
# (payload files from examples/), printing what each command did and what
# OVN holds afterwards. Everything is stopped by pid and removed at the end.
# Run as root on Debian: scripts/sandbox.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup)" >&2; exit 1; }
cargo build --release --locked -q
BIN=$PWD/target/release/cloudstack-ovn

D=$(mktemp -d /tmp/cloudstack-ovn-sandbox.XXXXXX)
export OVS_RUNDIR=$D OVS_LOGDIR=$D OVS_DBDIR=$D OVN_RUNDIR=$D OVN_LOGDIR=$D OVN_DBDIR=$D
stop() {
    for p in northd sb nb; do
        if [ -f "$D/$p.pid" ]; then
            pid=$(cat "$D/$p.pid")
            if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$D/$p.pid"; then kill "$pid" 2>/dev/null || true; fi
        fi
    done
    sleep 0.2
    rm -rf "$D"
}
trap stop EXIT

ovsdb-tool create "$D/nb.db" /usr/share/ovn/ovn-nb.ovsschema
ovsdb-tool create "$D/sb.db" /usr/share/ovn/ovn-sb.ovsschema
for db in nb sb; do
    ovsdb-server --detach --no-chdir --pidfile="$D/$db.pid" --log-file="$D/$db.log" --unixctl="$D/$db.ctl" \
        --remote="punix:$D/$db.sock" "$D/$db.db"
done
export OVN_NB_DB=unix:$D/nb.sock OVN_SB_DB=unix:$D/sb.sock
ovn-nbctl init
ovn-sbctl init
ovn-northd --detach --no-chdir --pidfile="$D/northd.pid" --log-file="$D/northd.log" --unixctl="$D/northd.ctl" \
    --ovnnb-db="$OVN_NB_DB" --ovnsb-db="$OVN_SB_DB"
ovn-nbctl --timeout=20 --wait=sb sync
export CLOUDSTACK_OVN_LOG=$D/cloudstack-ovn.log CLOUDSTACK_OVN_CONFIG=/nonexistent
echo "== private OVN in $D (NB $OVN_NB_DB)"

run() {
    local cmd=$1 example=${2:-$1}
    # The examples name a production NB socket; point them at the sandbox.
    sed "s#unix:/run/ovn/ovnnb_db.sock#$OVN_NB_DB#" "examples/$example.json" > "$D/$cmd.payload"
    local out rc=0
    out=$("$BIN" "$cmd" "$D/$cmd.payload" 60) || rc=$?
    printf '%-24s exit %d  %s\n' "$cmd" "$rc" "$out"
    [ "$rc" -eq 0 ] || exit "$rc"
}

echo "== first VM in isolated network 42 (each command preceded by ensure-network-device, as CloudStack does)"
for c in implement-network prepare-nic config-dhcp-subnet add-dhcp-entry config-dns-subnet add-dns-entry; do
    run ensure-network-device
    run "$c"
done
echo "== source NAT, an IP with static NAT, port forwarding 2222 -> 22 (associateIp / enableStaticNat / createPortForwardingRule)"
for c in assign-ip assign-ip-static add-static-nat add-port-forward; do
    run ensure-network-device
    run "${c%-static}" "$c"
done
echo "== the same sequence again changes nothing (idempotent)"
before=$(ovsdb-client dump "$OVN_NB_DB" OVN_Northbound | sort)
for c in implement-network prepare-nic config-dhcp-subnet add-dhcp-entry config-dns-subnet add-dns-entry assign-ip; do run "$c"; done
run add-static-nat; run add-port-forward
after=$(ovsdb-client dump "$OVN_NB_DB" OVN_Northbound | sort)
[ "$before" = "$after" ] && echo "NB unchanged by the second run"

echo "== ovn-nbctl show"
ovn-nbctl show
echo "== NAT, routes and port forwarding of cs-router-42"
ovn-nbctl lr-nat-list cs-router-42
ovn-nbctl lr-route-list cs-router-42
ovn-nbctl lr-lb-list cs-router-42
echo "== DHCP options of the VM's port"
ovn-nbctl dhcp-options-get-options "$(ovn-nbctl lsp-get-dhcpv4-options 3f0c0000-0000-4000-8000-000000000001 | cut -d' ' -f1)"
echo "== DNS records"
ovn-nbctl --bare --columns=records list DNS
echo "== ovn-trace: the VM's DHCP DISCOVER is answered by OVN"
ovn-trace --db="$OVN_SB_DB" cs-net-42 'inport=="3f0c0000-0000-4000-8000-000000000001" && eth.src==02:00:4c:3e:00:05 && eth.dst==ff:ff:ff:ff:ff:ff && ip4.src==0.0.0.0 && ip4.dst==255.255.255.255 && udp.src==68 && udp.dst==67' \
    | grep -o 'put_dhcp_opts([^)]*)' | head -1

echo "== delete the network (release-nic, ..., shutdown-network, destroy-network)"
for c in release-nic remove-dhcp-entry remove-dns-entry delete-port-forward delete-static-nat release-ip shutdown-network destroy-network; do run "$c"; done
echo "== ovn-nbctl show (empty: nothing of ours is left)"
ovn-nbctl show
echo "== log ($CLOUDSTACK_OVN_LOG)"
grep -c 'outcome=ok' "$CLOUDSTACK_OVN_LOG" | sed 's/^/successful commands logged: /'
