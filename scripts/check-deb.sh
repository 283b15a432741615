#!/usr/bin/env bash
# Check the Debian package built by scripts/build-deb.sh: unpack it with
# `dpkg -x` into a temp root, check files, modes, conffiles, maintainer
# scripts and the man page, then run the unpacked entry-point shim the way
# CloudStack runs it (payload file + timeout) for implement-network against
# a real NB ovsdb-server started here (temp dir, stopped by its pid).
# Prints one "PASS deb: ..." line per check; exits non-zero at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

deb=${1:-$(ls -1t "${CARGO_TARGET_DIR:-target}"/debian/cloudstack-ovn_*.deb 2>/dev/null | head -1)}
[ -n "$deb" ] && [ -f "$deb" ] || { echo "FAIL deb: no package (run scripts/build-deb.sh)"; exit 1; }

work=$(mktemp -d /tmp/csovn-deb-XXXXXX)
pidfile=$work/nb.pid
cleanup() {
    if [ -s "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

pass() { echo "PASS deb: $*"; }
fail() {
    echo "FAIL deb: $*"
    exit 1
}

root=$work/root
dpkg -x "$deb" "$root" || fail "dpkg -x $deb"
dpkg-deb -e "$deb" "$work/control" || fail "dpkg-deb -e $deb"
pass "unpacked $(basename "$deb")"

# --- files and modes -------------------------------------------------------
shim_rel=usr/share/cloudstack-management/extensions/ovn/ovn.sh
want_mode() { # path mode
    [ -f "$root/$1" ] || fail "/$1 missing"
    local m
    m=$(stat -c %a "$root/$1")
    [ "$m" = "$2" ] || fail "/$1 has mode $m, want $2"
}
want_mode usr/bin/cloudstack-ovn 755
want_mode "$shim_rel" 755
want_mode etc/cloudstack-ovn/config.toml 644
want_mode etc/logrotate.d/cloudstack-ovn 644
want_mode usr/share/man/man1/cloudstack-ovn.1.gz 644
want_mode usr/share/doc/cloudstack-ovn/cloudstack-setup.md 644
want_mode usr/share/doc/cloudstack-ovn/metadata.md 644
want_mode lib/systemd/system/cloudstack-ovn-agent.service 644
want_mode etc/default/cloudstack-ovn-agent 644
want_mode etc/logrotate.d/cloudstack-ovn-agent 644
pass "files and modes"

unit=$root/lib/systemd/system/cloudstack-ovn-agent.service
grep -qx 'ExecStart=/usr/bin/cloudstack-ovn agent $AGENT_OPTS' "$unit" || fail "agent unit does not run cloudstack-ovn agent"
grep -qx 'EnvironmentFile=-/etc/default/cloudstack-ovn-agent' "$unit" || fail "agent unit does not read /etc/default/cloudstack-ovn-agent"
grep -qx 'Environment=CLOUDSTACK_OVN_LOG=/var/log/cloudstack-ovn/agent.log' "$unit" || fail "agent unit has no own log file"
grep -qx /etc/default/cloudstack-ovn-agent "$work/control/conffiles" || fail "agent defaults are not a conffile"
"$root/usr/bin/cloudstack-ovn" agent --help | grep -q -- --ovs-db || fail "the packaged binary has no agent"
pass "host agent unit, defaults and logrotate"

grep -qx 'exec /usr/bin/cloudstack-ovn "\$@"' "$root/$shim_rel" || fail "shim does not exec /usr/bin/cloudstack-ovn \"\$@\""
sh -n "$root/$shim_rel" || fail "shim is not valid sh"
pass "entry-point shim execs the binary"

grep -qx /etc/cloudstack-ovn/config.toml "$work/control/conffiles" || fail "config.toml is not a conffile"
[ -x "$work/control/postinst" ] || fail "no executable postinst"
sh -n "$work/control/postinst" || fail "postinst is not valid sh"
grep -q 'chown "cloud:' "$work/control/postinst" || fail "postinst does not chown to cloud"
grep -q 'getent passwd cloud' "$work/control/postinst" || fail "postinst chowns without checking the user exists"
pass "conffiles and postinst"

lr=$root/etc/logrotate.d/cloudstack-ovn
grep -q '^/var/log/cloudstack-ovn/cloudstack-ovn.log {' "$lr" || fail "logrotate rule does not name the log file"
if grep -q copytruncate "$lr"; then fail "logrotate rule uses copytruncate (rotation by rename is safe)"; fi
if command -v logrotate >/dev/null; then
    logrotate -d -s "$work/logrotate.state" "$lr" >"$work/logrotate.out" 2>&1 || fail "logrotate -d: $(cat "$work/logrotate.out")"
fi
pass "logrotate rule"

# A here-string, not a pipe: `grep -q` stops at the first match and, with
# pipefail, the writer's SIGPIPE would fail the check once the page outgrows
# the pipe buffer.
man=$(zcat "$root/usr/share/man/man1/cloudstack-ovn.1.gz" | sed 's/\\-/-/g')
for c in implement-network prepare-nic assign-ip extension-details doctor; do
    grep -q -- "$c" <<<"$man" || fail "man page does not mention $c"
done
if command -v man >/dev/null; then
    man -l "$root/usr/share/man/man1/cloudstack-ovn.1.gz" >/dev/null 2>"$work/man.err" || fail "man -l: $(cat "$work/man.err")"
fi
pass "man page"

# --- the unpacked shim, run as CloudStack runs it --------------------------
bin=$root/usr/bin/cloudstack-ovn
shim=$work/ovn.sh
sed "s|exec /usr/bin/cloudstack-ovn|exec $bin|" "$root/$shim_rel" >"$shim"
chmod 755 "$shim"

schema=/usr/share/ovn/ovn-nb.ovsschema
[ -f "$schema" ] || schema=$repo/schemas/ovn-nb.ovsschema
for t in ovsdb-tool ovsdb-server ovn-nbctl; do
    command -v "$t" >/dev/null || fail "$t not found: run scripts/install-deps.sh"
done
export OVS_RUNDIR=$work OVS_LOGDIR=$work OVS_DBDIR=$work OVN_RUNDIR=$work OVN_LOGDIR=$work
ovsdb-tool create "$work/nb.db" "$schema" >/dev/null
ovsdb-server --detach --no-chdir --pidfile="$pidfile" --log-file="$work/nb.log" \
    --unixctl="$work/nb.ctl" --remote="punix:$work/nb.sock" "$work/nb.db" >"$work/nb.out" 2>&1 ||
    fail "ovsdb-server did not start: $(cat "$work/nb.out")"
nb=unix:$work/nb.sock
ovn-nbctl --db="$nb" --timeout=10 init

cat >"$work/cs-extnet-implement-network.payload" <<JSON
{"physical-network-extension-details":{"physicalnetworkname":"pn1","ovn.nb.connection":"$nb"},
 "network-extension-details":{},
 "payload":{"network_id":"42","vlan":"","zone_id":"1","guest_type":"isolated","network_state":"implemented",
            "gateway":"10.1.1.1","cidr":"10.1.1.0/24"}}
JSON
run_shim() { # args...; CloudStack's environment has no OVN_* variables
    (cd "$work" && env -i PATH=/usr/bin:/bin CLOUDSTACK_OVN_CONFIG=/nonexistent \
        CLOUDSTACK_OVN_LOG="$work/cloudstack-ovn.log" "$shim" "$@")
}
want='{"network.broadcast_domain_type":"Lswitch","network.broadcast_uri":"ovn://cs-net-42"}'
for attempt in first second; do
    rc=0
    out=$(run_shim implement-network "$work/cs-extnet-implement-network.payload" 60 2>&1) || rc=$?
    [ "$rc" = 0 ] || fail "implement-network ($attempt run) exited $rc: $out"
    [ "$out" = "$want" ] || fail "implement-network ($attempt run) printed '$out', want '$want'"
done
ovn-nbctl --db="$nb" --timeout=10 ls-list | grep -q '(cs-net-42)' || fail "NB has no cs-net-42 after implement-network"
[ "$(ovn-nbctl --db="$nb" --timeout=10 ls-list | grep -c cs-net-42)" = 1 ] || fail "second run duplicated the switch"
grep -q 'command=implement-network .*outcome=ok' "$work/cloudstack-ovn.log" || fail "no ok line in the log"
pass "shim implement-network <payload-file> 60 against a real NB: Lswitch output, one switch, idempotent, logged"

rc=0
out=$(run_shim no-such-command "$work/cs-extnet-implement-network.payload" 60 2>&1) || rc=$?
[ "$rc" = 2 ] && [ "$out" = '{"message":"unknown command: no-such-command","status":"error"}' ] ||
    fail "unknown command: exit $rc, '$out'"
pass "shim unknown command: exit 2, one line of JSON"

run_shim extension-details --json | python3 -c 'import json,sys; d=json.load(sys.stdin)["details"]; json.loads(d["network.service.capabilities"]); assert d["network.isolation.method"]=="NetworkExtension"' ||
    fail "extension-details --json"
rc=0
out=$(run_shim doctor --nb "$nb" --log-file "$work/doctor.log" 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "doctor against the NB exited $rc: $out"
pass "shim extension-details and doctor"
