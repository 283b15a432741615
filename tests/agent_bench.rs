//! The host agent at scale (docs/performance.md, "Host agent"): a benchmark,
//! not part of the suite (a `test = false`, `harness = false` target in
//! Cargo.toml, so `cargo test` neither builds nor runs it; run by
//! `scripts/bench-agent.sh`). On
//! a real NB/SB/northd and a userspace-datapath chassis:
//!   * the NB bulk-loaded with `BENCH_PORTS` ports (scripts/bench.py's
//!     loader, default 100 000) that northd turns into SB Port_Bindings;
//!   * one network with `BENCH_VMS` NICs (default 200), each with a vm-data
//!     row from `save-vm-data`, each a VM namespace bound on this chassis;
//!   * the agent started with the first `BENCH_LOCAL` (default 50) bound:
//!     its first view's bytes read and its RSS; then all VMs bound and
//!     5 requests from every VM, 8 VMs at a time: client and server latency.
//!
//! Prints `[bench]` lines; asserts only correctness (each VM gets its own
//! instance-id) and the 32 MB RSS target.

#![allow(clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::scenario::*;
use common::*;
use serde_json::{json, Value};

fn env_or(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn keyed(payload: Value, key: &ZoneKey) -> Value {
    let mut env = registered(payload);
    env["physical-network-extension-details"]["ovn.metadata.public_key"] = json!(key.public_key);
    env["physical-network-extension-details"]["ovn.metadata.digest_key"] = json!(key.digest_key);
    env
}

fn nic_of(k: usize) -> (String, String, String, Value) {
    let uuid = format!("3f0c0000-0000-4000-8000-{:012}", 5000 + k);
    let mac = format!("02:00:4c:3f:{:02x}:{:02x}", k >> 8, k & 255);
    let ip = format!("10.1.1.{}", 10 + k);
    let p = nic(42, &uuid, &mac, &ip, &format!("vm-{k}"), true);
    (uuid, mac, ip, p)
}

fn vm_data(uuid: &str, k: usize) -> Value {
    json!([
        {"dir": "userdata", "file": "user_data", "content": "#cloud-config\nruncmd: [echo hello]\n".repeat(8)},
        {"dir": "metadata", "file": "instance-id", "content": uuid},
        {"dir": "metadata", "file": "local-hostname", "content": format!("vm-{k}")},
        {"dir": "metadata", "file": "service-offering", "content": "Small Instance"},
        {"dir": "metadata", "file": "public-keys", "content": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE8x bench"},
        {"dir": "password", "file": "vm_password", "content": format!("Pw-{k}")}
    ])
}

fn pct(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((q / 100.0) * (v.len() - 1) as f64).round() as usize]
}

fn view_reads(log: &str) -> Vec<(usize, u64, u64)> {
    let field =
        |l: &str, k: &str| -> Option<u64> { l.split(&format!("{k}=")).nth(1)?.split_whitespace().next()?.parse().ok() };
    log.lines()
        .filter(|l| l.contains("msg=\"view read\""))
        .filter_map(|l| {
            Some((field(l, "nics")? as usize, field(l, "sb_bytes_read_total")?, field(l, "nb_bytes_read_total")?))
        })
        .collect()
}

fn main() {
    agent_at_scale();
}

fn agent_at_scale() {
    let ports = env_or("BENCH_PORTS", 100_000);
    let local = env_or("BENCH_LOCAL", 50);
    let vms = env_or("BENCH_VMS", 200);
    assert!(local <= vms && vms <= 240);
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let nb = central.nb();
    let key = ZoneKey::generate();

    // The big NB, as scripts/bench.py loads it (10 ports per switch).
    let t = Instant::now();
    let sock = nb.remote().trim_start_matches("unix:").to_string();
    let py = format!(
        "import sys; sys.path.insert(0, 'scripts'); import bench; bench.bulk_load({sock:?}, {}, {ports}, 10000)",
        (ports / 10).max(1)
    );
    let o = std::process::Command::new("python3").args(["-c", &py]).output().expect("python3");
    assert!(o.status.success(), "bulk load: {}", String::from_utf8_lossy(&o.stderr));
    // northd's first pass over the loaded NB takes minutes: beyond the
    // harness' 10 s command timeout.
    let tool = |t: &str, db: String, args: &[&str]| {
        let o =
            std::process::Command::new(t).arg(format!("--db={db}")).arg("--timeout=900").args(args).output().unwrap();
        assert!(o.status.success(), "{t} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    tool("ovn-nbctl", nb.remote(), &["--wait=sb", "sync"]);
    let sb_pb = tool("ovn-sbctl", central.sb_remote(), &["--bare", "--columns=_uuid", "list", "Port_Binding"])
        .lines()
        .filter(|l| !l.is_empty())
        .count();
    eprintln!(
        "[bench] NB loaded with {ports} ports, SB has {sb_pb} Port_Bindings ({:.0} s incl. northd)",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    ok(cs(nb, "implement-network", network(42)));
    ok(cs(
        nb,
        "ensure-network-device",
        json!({"network_id": "42", "vlan": "", "zone_id": "1", "current_details": "{}"}),
    ));
    let mut nics = Vec::new();
    for k in 0..vms {
        let (uuid, mac, ip, p) = nic_of(k);
        run_all(nb, NIC_START, &p);
        let saved = run_cs(&nb.remote(), "save-vm-data", &keyed(with(p, json!({"vm_data": vm_data(&uuid, k)})), &key));
        ok(saved);
        nics.push((uuid, mac, ip));
    }
    eprintln!("[bench] {vms} NICs prepared and saved ({:.0} s)", t.elapsed().as_secs_f64());

    // At 100k ports a binding takes longer than the harness' 10 s plug
    // timeout: plug without waiting, then wait for all.
    let plug = |range: std::ops::Range<usize>| -> Vec<Vm> {
        let vms: Vec<Vm> = range
            .clone()
            .map(|k| {
                let (uuid, mac, ip) = &nics[k];
                let vm = hv.plug_vm_nowait(&format!("tb{k}"), uuid, mac);
                assert!(vm.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]).status.success());
                assert!(vm.exec(&["ip", "route", "add", "169.254.169.254/32", "dev", "eth0"]).status.success());
                vm
            })
            .collect();
        for k in range {
            tool("ovn-sbctl", central.sb_remote(), &["wait-until", "Port_Binding", &nics[k].0, "up=true"]);
        }
        vms
    };
    let t = Instant::now();
    let mut guests: Vec<Vm> = plug(0..local);
    eprintln!("[bench] {local} VMs bound ({:.0} s)", t.elapsed().as_secs_f64());

    let agent = Agent::start(&central, &hv, &key.file);
    let first = wait_until(Duration::from_secs(120), || view_reads(&agent.log()).iter().any(|v| v.0 >= local));
    assert!(first, "the agent never saw {local} NICs\n{}", agent.log());
    let (n, sb, nbb) = *view_reads(&agent.log()).iter().find(|v| v.0 >= local).unwrap();
    let sb_first = view_reads(&agent.log()).first().copied().unwrap();
    eprintln!(
        "[bench] agent start-up with {n} local NICs: first view read SB {} B, NB {} B; cumulative at the view with {n} NICs SB {sb} B, NB {nbb} B",
        sb_first.1, sb_first.2
    );
    let served = wait_until(Duration::from_secs(60), || {
        let o = guests[0].exec(&["curl", "-s", "-m", "2", "http://169.254.169.254/latest/meta-data/instance-id"]);
        String::from_utf8_lossy(&o.stdout) == nics[0].0
    });
    assert!(served, "not served\n{}", agent.log());
    std::thread::sleep(Duration::from_secs(3));
    let rss_local = agent.rss_kb().unwrap();
    eprintln!("[bench] agent RSS with {local} local NICs: {rss_local} KiB");

    let t = Instant::now();
    guests.extend(plug(local..vms));
    eprintln!("[bench] {} more VMs bound ({:.0} s)", vms - local, t.elapsed().as_secs_f64());
    let last = vms - 1;
    let all = wait_until(Duration::from_secs(120), || {
        let o = guests[last].exec(&["curl", "-s", "-m", "2", "http://169.254.169.254/latest/meta-data/instance-id"]);
        String::from_utf8_lossy(&o.stdout) == nics[last].0
    });
    assert!(all, "VM {last} not served\n{}", agent.log());

    let script = "for i in 1 2 3 4 5; do curl -s -m 5 -o /tmp/cs-bench-body.$$ -w '%{http_code} %{time_total}\\n' \
                  http://169.254.169.254/latest/meta-data/instance-id; cat /tmp/cs-bench-body.$$; echo; done; rm -f /tmp/cs-bench-body.$$";
    requests(&agent, vms, "8 VMs at a time, curl time_total", |k| {
        let o = guests[k].exec(&["sh", "-c", script]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10, "VM {k}: {text}");
        lines
            .chunks(2)
            .map(|pair| {
                let (code, secs) = pair[0].split_once(' ').unwrap();
                assert_eq!(code, "200", "VM {k}: {text}");
                assert_eq!(pair[1], nics[k].0, "VM {k} got another VM's instance-id");
                secs.parse::<f64>().unwrap() * 1000.0
            })
            .collect()
    });
    let rss_all = agent.rss_kb().unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("[bench] agent RSS with {vms} local NICs: {rss_all} KiB; loadavg {}", load.trim());

    // The same requests without a process per request: curl, sh and
    // `ip netns exec` forking on the 2 cores the agent runs on dominate the
    // numbers above (the server's clock starts at accept, before the client
    // has written its request). Here 8 threads of this process enter each
    // VM's namespace in turn and speak HTTP over a plain socket.
    requests(&agent, vms, "8 in-process clients", |k| {
        enter_netns(guests[k].netns());
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let answer = get_instance_id();
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                assert!(answer.starts_with("HTTP/1.1 200"), "VM {k}: {answer}");
                assert!(answer.ends_with(&nics[k].0), "VM {k} got another VM's instance-id: {answer}");
                ms
            })
            .collect()
    });
    assert!(rss_all < 32 * 1024, "agent RSS {rss_all} KiB (target ≤ 32 MB)");
}

/// 5 requests from each of `vms` VMs, 8 VMs at a time (`per_vm(k)` makes
/// VM k's and returns their client-side times in ms); prints client and
/// server (the agent's log) percentiles.
fn requests(agent: &Agent, vms: usize, how: &str, per_vm: impl Fn(usize) -> Vec<f64> + Sync) {
    let before = agent.log().lines().count();
    let client: std::sync::Mutex<Vec<f64>> = Default::default();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if k >= vms {
                    break;
                }
                let times = per_vm(k);
                client.lock().unwrap().extend(times);
            });
        }
    });
    let wall = t.elapsed().as_secs_f64();
    let client = client.into_inner().unwrap();
    let server = server_latencies(&agent.log(), before);
    assert_eq!(server.len(), client.len(), "every request logged");
    eprintln!(
        "[bench] {} requests from {vms} VMs (5 each, {how}) in {wall:.1} s: client p50 {:.2} ms p99 {:.2} ms; server p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
        client.len(),
        pct(&client, 50.0),
        pct(&client, 99.0),
        pct(&server, 50.0),
        pct(&server, 99.0),
        pct(&server, 100.0)
    );
}

/// The agent's request latencies (`latency_ms`, from accept) logged after
/// line `skip`.
fn server_latencies(log: &str, skip: usize) -> Vec<f64> {
    log.lines()
        .skip(skip)
        .filter(|l| l.contains("msg=request"))
        .filter_map(|l| l.split("latency_ms=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Move this thread into a named network namespace (`ip netns` layout).
fn enter_netns(name: &str) {
    let ns = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

/// One metadata request over a plain socket; the whole answer.
fn get_instance_id() -> String {
    use std::io::{Read, Write};
    let addr = "169.254.169.254:80".parse().unwrap();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}
