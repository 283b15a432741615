//! A 3-member Raft NB: commands go to the leader, and when the leader is
//! SIGKILLed in the middle of a burst every command still succeeds (the
//! election is waited out, an ambiguous outcome is re-observed and
//! re-planned), and every expected row exists exactly once. The commands'
//! own logs must show that the failover was exercised: at least one
//! command lost its server or found no leader and went on.

#![allow(clippy::print_stderr)] // a timing line, shown with --nocapture

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::scenario::*;
use common::*;
use serde_json::Value;

const NETWORKS: u32 = 40;
const NICS_PER_NETWORK: u32 = 7;
const WORKERS: usize = 8;

#[test]
fn leader_killed_during_a_burst() {
    let cluster = Cluster::start();
    let remote = cluster.remote();
    let mut jobs: Vec<(&'static str, Value)> = Vec::new();
    for n in 0..NETWORKS {
        let id = 100 + n;
        jobs.push(("implement-network", network(id)));
        for k in 0..NICS_PER_NETWORK {
            let uuid = format!("3f0c0000-0000-4000-8000-{:06}{:06}", id, k);
            let mac = format!("02:00:00:{:02x}:{:02x}:{:02x}", (id >> 8) as u8, id as u8, k as u8);
            jobs.push(("prepare-nic", nic(id, &uuid, &mac, &format!("10.1.1.{}", 10 + k), &format!("vm-{k}"), true)));
        }
    }
    let total = jobs.len();
    assert!(total >= 300);
    // Interleave networks so concurrent commands touch different and same switches.
    jobs.reverse();
    let queue = Arc::new(Mutex::new(jobs));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    // Commands whose log shows a lost connection / a wait for a leader.
    let reconnected = Arc::new(AtomicUsize::new(0));
    let waited = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (queue, done, failures, remote) = (queue.clone(), done.clone(), failures.clone(), remote.clone());
            let (reconnected, waited) = (reconnected.clone(), waited.clone());
            std::thread::spawn(move || loop {
                let Some((command, payload)) = queue.lock().unwrap().pop() else { break };
                let run = run_cs_logged(&remote, command, &envelope(payload));
                // commands::converge: "connection lost[ while reading], reconnecting";
                // commands::connect: "no usable NB server yet, retrying".
                if run.log.contains("reconnecting") {
                    reconnected.fetch_add(1, Ordering::SeqCst);
                }
                if run.log.contains("no usable NB server yet") {
                    waited.fetch_add(1, Ordering::SeqCst);
                }
                let out = run.output;
                if !out.status.success() || !out.stderr.is_empty() {
                    failures.lock().unwrap().push(format!("{command}: {}", String::from_utf8_lossy(&out.stdout)));
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    assert!(wait_until(std::time::Duration::from_secs(60), || done.load(Ordering::SeqCst) >= total / 3));
    let killed = cluster.kill_leader();
    let killed_at = done.load(Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {total} commands failed after killing member {killed} at {killed_at}: {failures:#?}",
        failures.len()
    );
    assert!(killed_at < total, "the leader must die mid-burst ({killed_at}/{total})");
    let (reconnected, waited) = (reconnected.load(Ordering::SeqCst), waited.load(Ordering::SeqCst));
    eprintln!(
        "{total} commands, leader {killed} killed after {killed_at}, all done in {:?}; \
         {reconnected} reconnected mid-command, {waited} waited for a leader",
        started.elapsed()
    );
    assert!(
        reconnected + waited > 0,
        "no command lost its server or waited for a new leader: the failover was not exercised"
    );

    // Every expected row exactly once: per network one switch, one router
    // (we are its gateway) with its peer port, one port group, one port per NIC.
    assert_eq!(cluster.count_rows("Logical_Switch"), NETWORKS as usize);
    assert_eq!(cluster.count_rows("Logical_Router"), NETWORKS as usize);
    assert_eq!(cluster.count_rows("Port_Group"), NETWORKS as usize);
    assert_eq!(cluster.count_rows("Logical_Switch_Port"), (NETWORKS * (NICS_PER_NETWORK + 1)) as usize);
    for n in [100, 100 + NETWORKS / 2, 100 + NETWORKS - 1] {
        let ports = cluster.nbctl(&["lsp-list", &format!("cs-net-{n}")]);
        assert_eq!(ports.lines().filter(|l| l.contains("3f0c0000-")).count(), NICS_PER_NETWORK as usize, "{ports}");
    }
}
