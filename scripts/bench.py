#!/usr/bin/env python3
"""Scale benchmark for cloudstack-ovn (run by scripts/bench.sh).

Starts a private OVN NB ovsdb-server in a temp dir and measures, in one run:
  * prepare-nic exec-to-exit latency (p50/p99) on an empty NB;
  * the NB bulk-loaded with N networks and M ports over one JSON-RPC stream;
  * prepare-nic latency on the loaded NB, and the same change made by one
    chained ovn-nbctl call;
  * bytes read from the NB per command (from the product's log line),
    peak RSS (wait4 rusage), and throughput with 16 concurrent invocations.
Prints a results table with ratios and the targets. Standard library only.
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

# src/nb/mod.rs ROW_NAMESPACE: rows are bulk-loaded exactly as cloudstack-ovn
# writes them (owner tag, kinds, deterministic UUIDs), so `audit` reads them
# as its own.
ROW_NAMESPACE = uuid.UUID(int=0x6c0b_1d7e_93a4_4f0e_8d2b_5a1c_0e7f_3b21)


def row_uuid(kind, key):
    return str(uuid.uuid5(ROW_NAMESPACE, f"cloudstack/{kind}/{key}"))

SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


class Rpc:
    """Minimal JSON-RPC over the NB unix socket, for the bulk load."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.buf = b""
        self.dec = json.JSONDecoder()
        self.next = 0

    def transact(self, ops):
        self.next += 1
        self.s.sendall(json.dumps({"method": "transact", "params": ["OVN_Northbound"] + ops, "id": self.next}).encode())
        while True:
            try:
                msg, end = self.dec.raw_decode(self.buf.decode())
                self.buf = self.buf[len(self.buf.decode()[:end].encode()):]
            except ValueError:
                self.buf += self.s.recv(1 << 20)
                continue
            if msg.get("id") == "echo":
                self.s.sendall(json.dumps({"id": "echo", "result": msg.get("params", []), "error": None}).encode())
                continue
            if msg.get("id") != self.next:
                continue
            for r in msg.get("result") or []:
                if r and "error" in r:
                    raise RuntimeError(r)
            return msg


def bulk_load(sock, networks, ports, first_net):
    """networks switches with ports/networks ports each, 100 networks per transaction."""
    per = ports // networks
    rpc = Rpc(sock)
    batch = []
    t0 = time.perf_counter()
    for n in range(first_net, first_net + networks):
        lsps = []
        for k in range(per):
            name = f"b{n:06d}-{k:04d}-4000-8000-000000000000"
            lsps.append(f"p{k}")
            mac = f"02:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}:{k >> 8:02x}:{k & 255:02x}"
            addr = f"{mac} 10.{(k >> 8) % 250}.{k & 255}.{(n % 250) + 2}"
            batch.append({"op": "insert", "table": "Logical_Switch_Port", "uuid-name": f"n{n}p{k}", "uuid": row_uuid("nic", name),
                          "row": {"name": name, "addresses": addr, "port_security": addr,
                                  "external_ids": ["map", [["cloudstack:owner", "cloudstack"], ["cloudstack:kind", "nic"],
                                                           ["cloudstack:network_id", str(n)], ["cloudstack:nic_uuid", name]]]}})
        batch.append({"op": "insert", "table": "Logical_Switch", "uuid": row_uuid("network", n),
                      "row": {"name": f"cs-net-{n}", "ports": ["set", [["named-uuid", f"n{n}{p}"] for p in lsps]],
                              "external_ids": ["map", [["cloudstack:owner", "cloudstack"], ["cloudstack:kind", "network"],
                                                       ["cloudstack:network_id", str(n)]]]}})
        if len(batch) >= 100 * (per + 1):
            rpc.transact(batch)
            batch = []
    if batch:
        rpc.transact(batch)
    return time.perf_counter() - t0


def payload(nb, net, k):
    return {"physical-network-extension-details": {"ovn.nb.connection": nb},
            "network-extension-details": {},
            "payload": {"network_id": str(net), "zone_id": "1", "gateway": "10.1.1.1", "cidr": "10.1.0.0/16",
                        "nic_id": str(k), "nic_uuid": f"3f0c{net:04x}-0000-4000-8000-{k:012d}",
                        "mac": f"02:00:{(net >> 8) & 255:02x}:{net & 255:02x}:{(k >> 8) & 255:02x}:{k & 255:02x}",
                        "ip": f"10.1.{(k >> 8) + 2}.{(k & 255) or 1}", "default_nic": "true", "hostname": f"vm-{k}"}}


def vm_data_payload(nb, net, k, keys):
    """save-vm-data for the NIC of payload(nb, net, k), with CloudStack's
    vm_data (user data, a password to seal, the metadata files)."""
    doc = payload(nb, net, k)
    doc["physical-network-extension-details"].update(keys)
    p = doc["payload"]
    p["vm_data"] = [
        {"dir": "userdata", "file": "user_data", "content": "#cloud-config\nruncmd: [echo hello]\n" * 8},
        {"dir": "metadata", "file": "service-offering", "content": "Small Instance"},
        {"dir": "metadata", "file": "availability-zone", "content": "zone1"},
        {"dir": "metadata", "file": "local-hostname", "content": f"vm-{k}"},
        {"dir": "metadata", "file": "local-ipv4", "content": p["ip"]},
        {"dir": "metadata", "file": "instance-id", "content": str(uuid.uuid4())},
        {"dir": "metadata", "file": "vm-id", "content": str(k)},
        {"dir": "metadata", "file": "public-keys", "content": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE8x bench"},
        {"dir": "metadata", "file": "cloud-identifier", "content": "CloudStack-{bench}"},
        {"dir": "password", "file": "vm_password", "content": f"Pw-{k}"},
    ]
    return doc


class Runner:
    def __init__(self, binary, tmp, nb):
        self.binary, self.tmp, self.nb = binary, tmp, nb
        self.log = os.path.join(tmp, "cs.log")
        self.env = dict(os.environ, CLOUDSTACK_OVN_LOG=self.log, CLOUDSTACK_OVN_CONFIG="/nonexistent")
        self.env.pop("OVN_NB_DB", None)

    def run(self, command, doc, tag):
        """Exec to exit of one invocation (posix_spawn: no copy of this
        Python process in between). Returns (seconds, exit code, output)."""
        path = os.path.join(self.tmp, f"p-{tag}.json")
        out_path = path + ".out"
        with open(path, "w") as f:
            json.dump(doc, f)
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            t0 = time.perf_counter()
            pid = os.posix_spawn(self.binary, [self.binary, command, path, "60"], self.env,
                                 file_actions=[(os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_DUP2, fd, 2)])
            _, status = os.waitpid(pid, 0)
            elapsed = time.perf_counter() - t0
        finally:
            os.close(fd)
        with open(out_path) as f:
            out = f.read()
        return elapsed, os.waitstatus_to_exitcode(status), out

    def peak_rss_kb(self, command, doc):
        """Maximum resident set size of one invocation, from GNU time (its
        own small process forks the binary, so the number is the binary's)."""
        path = os.path.join(self.tmp, "p-rss.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        res = subprocess.run(["/usr/bin/time", "-f", "%M", self.binary, command, path, "60"],
                             capture_output=True, text=True, env=self.env)
        return int(res.stderr.strip().splitlines()[-1])

    def bytes_read(self):
        with open(self.log) as f:
            return [int(m.group(1)) for m in re.finditer(r"command=prepare-nic .*?bytes_read=(\d+)", f.read())]


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def series(runner, net, first, count, tag):
    lat = []
    for k in range(first, first + count):
        e, rc, out = runner.run("prepare-nic", payload(runner.nb, net, k), f"{tag}-{k}")
        if rc != 0:
            sys.exit(f"prepare-nic failed: {out}")
        lat.append(e * 1000)
    # Peak RSS: a new NIC (a write) and the same NIC again (read only).
    rss = [runner.peak_rss_kb("prepare-nic", payload(runner.nb, net, first + count)) for _ in range(2)]
    return lat, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/cloudstack-ovn")
    ap.add_argument("--networks", type=int, default=10000)
    ap.add_argument("--ports", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--nbctl-runs", type=int, default=10)
    ap.add_argument("--concurrent", type=int, default=1600)
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    tmp = tempfile.mkdtemp(prefix="cs-ovn-bench-")
    sock = os.path.join(tmp, "nb.sock")
    nb = f"unix:{sock}"
    pidfile = os.path.join(tmp, "nb.pid")
    sb_sock, sb_pidfile = os.path.join(tmp, "sb.sock"), os.path.join(tmp, "sb.pid")
    try:
        sh("ovsdb-tool", "create", os.path.join(tmp, "nb.db"), SCHEMA)
        sh("ovsdb-server", "--detach", "--no-chdir", f"--pidfile={pidfile}", f"--log-file={tmp}/nb.log",
           f"--unixctl={tmp}/nb.ctl", f"--remote=punix:{sock}", os.path.join(tmp, "nb.db"))
        sh("ovn-nbctl", f"--db={nb}", "init")
        r = Runner(binary, tmp, nb)

        # What spawning a process costs this harness (exec of /bin/true, timed the same way).
        true_lat = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            pid = os.posix_spawn("/bin/true", ["/bin/true"], r.env)
            os.waitpid(pid, 0)
            true_lat.append((time.perf_counter() - t0) * 1000)
        empty_lat, empty_rss = series(r, 1, 0, args.runs, "empty")
        load_s = bulk_load(sock, args.networks, args.ports, 10)
        loaded_lat, loaded_rss = series(r, 2, 0, args.runs, "loaded")
        read = r.bytes_read()

        # save-vm-data for the NICs prepare-nic just made (UserData).
        keygen = sh(binary, "metadata-keygen", os.path.join(tmp, "md.key"))
        keys = dict(line.split("=", 1) for line in keygen.split())
        vm_lat = []
        for k in range(args.runs):
            e, rc, out = r.run("save-vm-data", vm_data_payload(nb, 2, k, keys), f"vm-{k}")
            if rc != 0:
                sys.exit(f"save-vm-data failed: {out}")
            vm_lat.append(e * 1000)
        vm_rss = r.peak_rss_kb("save-vm-data", vm_data_payload(nb, 2, args.runs + 1, keys))
        # The same vm_data again (a VM restart): the row holds a password
        # nobody acknowledged yet, nothing to write. Without an SB, then with
        # one (the command then also reads the acknowledgements from SB
        # Chassis_Private: a second connection and read transaction).
        sh("ovsdb-tool", "create", os.path.join(tmp, "sb.db"), SB_SCHEMA)
        sh("ovsdb-server", "--detach", "--no-chdir", f"--pidfile={sb_pidfile}", f"--log-file={tmp}/sb.log",
           f"--unixctl={tmp}/sb.ctl", f"--remote=punix:{sb_sock}", os.path.join(tmp, "sb.db"))
        again = {"": [], "sb": []}
        for k in range(args.runs):
            for mode, lat in again.items():
                doc = vm_data_payload(nb, 2, k, keys)
                if mode:
                    doc["physical-network-extension-details"]["ovn.sb.connection"] = f"unix:{sb_sock}"
                e, rc, out = r.run("save-vm-data", doc, f"vm-again-{mode}-{k}")
                if rc != 0:
                    sys.exit(f"save-vm-data (again, {mode or 'no SB'}) failed: {out}")
                lat.append(e * 1000)

        # The same change with ovn-nbctl: add a port with addresses and port security.
        nbctl = []
        for k in range(args.nbctl_runs):
            name, mac = f"nbctl-{k}", f"02:aa:00:00:{k >> 8:02x}:{k & 255:02x}"
            t0 = time.perf_counter()
            sh("ovn-nbctl", f"--db={nb}", "--timeout=120", "lsp-add", "cs-net-2", name, "--", "lsp-set-addresses", name,
               f"{mac} 10.9.0.{k + 2}", "--", "lsp-set-port-security", name, f"{mac} 10.9.0.{k + 2}")
            nbctl.append((time.perf_counter() - t0) * 1000)

        # 16 concurrent invocations.
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda k: r.run("prepare-nic", payload(nb, 3, k), f"conc-{k}"), range(args.concurrent)))
        wall = time.perf_counter() - t0
        errors = sum(1 for x in results if x[1] != 0)

        # audit over the whole loaded NB (operator command): time and peak RSS.
        res = subprocess.run(["/usr/bin/time", "-f", "%e %M", binary, "audit", "--json", "--nb", nb, "--timeout", "600"],
                             capture_output=True, text=True, env=r.env)
        audit_s, audit_kb = res.stderr.strip().splitlines()[-1].split()
        audit_doc = json.loads(res.stdout)
        if "findings" not in audit_doc:
            sys.exit(f"audit failed: {res.stdout}")
        listing = sh("ovn-nbctl", f"--db={nb}", "--timeout=120", "--bare", "--columns=_uuid", "list", "Logical_Switch_Port")
        total_ports = sum(1 for line in listing.splitlines() if line.strip())
        p50e, p99e, p50l, p99l = pct(empty_lat, 50), pct(empty_lat, 99), pct(loaded_lat, 50), pct(loaded_lat, 99)
        nb_med = statistics.median(nbctl)
        rows = [
            ("NB size after load", f"{args.networks} networks, {total_ports} ports (bulk load {load_s:.1f} s)", ""),
            ("exec of /bin/true, same harness (p50)", f"{pct(true_lat, 50):.2f} ms", ""),
            ("prepare-nic p50 / p99, empty NB", f"{p50e:.2f} / {p99e:.2f} ms", "p50 ≤ 1.8 ms"),
            ("prepare-nic p50 / p99, loaded NB", f"{p50l:.2f} / {p99l:.2f} ms", ""),
            ("loaded / empty (p50)", f"{p50l / p50e:.2f}", "≤ 1.25"),
            ("save-vm-data p50 / p99, loaded NB (sealed password and user data)",
             f"{pct(vm_lat, 50):.2f} / {pct(vm_lat, 99):.2f} ms, {vm_rss / 1024:.1f} MB peak RSS", ""),
            ("save-vm-data / prepare-nic (p50, loaded)", f"{pct(vm_lat, 50) / p50l:.2f}", "≤ 1.2"),
            ("save-vm-data again, unacknowledged password, no write: p50 without / with the SB ack read",
             f"{pct(again[''], 50):.2f} / {pct(again['sb'], 50):.2f} ms", ""),
            ("save-vm-data again with the SB ack read / prepare-nic (p50, loaded)",
             f"{pct(again['sb'], 50) / p50l:.2f}", "≤ 1.2"),
            ("ovn-nbctl same change, loaded NB (median)", f"{nb_med:.1f} ms", ""),
            ("ovn-nbctl / cloudstack-ovn (p50, loaded)", f"{nb_med / p50l:.0f}×", "≥ 200×"),
            ("bytes read from the NB per prepare-nic (max)", f"{max(read)} B", "≤ 16 KB"),
            ("peak RSS (max over all runs)", f"{max(empty_rss + loaded_rss) / 1024:.1f} MB", "≤ 10 MB"),
            ("16 concurrent invocations", f"{args.concurrent / wall:.0f} commands/s, {errors} errors", "≥ 600/s, 0 errors"),
            ("audit of the loaded NB (rows of ours: see scanned)", f"{float(audit_s):.1f} s, {int(audit_kb) / 1024:.0f} MB peak RSS, {len(audit_doc['findings'])} findings", "usable"),
        ]
        width = max(len(a) for a, _, _ in rows)
        print(f"{'measure'.ljust(width)} | result | target")
        for a, b, c in rows:
            print(f"{a.ljust(width)} | {b} | {c}")
    finally:
        for pf in (pidfile, sb_pidfile):
            try:
                with open(pf) as f:
                    pid = int(f.read())
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if pf.encode() in f.read():
                        os.kill(pid, 15)
            except (OSError, ValueError):
                pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
