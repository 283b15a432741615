//! The host metadata agent (`cloudstack-ovn agent`) on a test chassis: run
//! in the chassis' network namespace (`nsenter --net`, so the namespaces it
//! creates are visible to everyone), with its own key, state dir, log and
//! namespace prefix; stopped and cleaned up on drop.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::util::{next_id, tool, LabDir};
use super::{bin, Central, Chassis};

pub struct Agent {
    child: Option<Child>,
    dir: Arc<LabDir>,
    prefix: String,
    key: PathBuf,
    args: Vec<String>,
    env: Vec<(OsString, OsString)>,
    chassis_netns: String,
}

/// A zone key pair: (private key file, registration details to add).
pub struct ZoneKey {
    pub file: PathBuf,
    pub public_key: String,
    pub digest_key: String,
    _dir: Arc<LabDir>,
}

impl ZoneKey {
    /// `cloudstack-ovn metadata-keygen FILE`.
    pub fn generate() -> ZoneKey {
        let dir = Arc::new(LabDir::new("mdkey"));
        let file = dir.file("metadata.key");
        let o = Command::new(bin()).arg("metadata-keygen").arg(&file).output().expect("run metadata-keygen");
        assert!(o.status.success(), "metadata-keygen: {}", String::from_utf8_lossy(&o.stdout));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("metadata-keygen printed no {k}: {text}"))
                .to_string()
        };
        ZoneKey {
            public_key: get("ovn.metadata.public_key"),
            digest_key: get("ovn.metadata.digest_key"),
            file,
            _dir: dir,
        }
    }
}

impl Agent {
    pub fn start(central: &Central, chassis: &Chassis, key: &Path) -> Agent {
        Agent::start_with(central.nb_remote(), chassis, key, Vec::new())
    }

    /// [`Agent::start`] with the NB remote (list) given explicitly, e.g. a
    /// Raft cluster's members in a chosen order, and extra environment.
    pub fn start_with(nb_remote: String, chassis: &Chassis, key: &Path, env: Vec<(OsString, OsString)>) -> Agent {
        let dir = Arc::new(LabDir::new("agent"));
        let prefix = format!("csomd{}n{}-", std::process::id(), next_id());
        let args = vec![
            "agent".to_string(),
            format!("--ovs-db={}", chassis.db_remote()),
            format!("--nb={nb_remote}"),
            format!("--state-dir={}", dir.file("state").display()),
            format!("--netns-prefix={prefix}"),
            "--grace=2".to_string(),
            "--poll-ms=200".to_string(),
        ];
        let mut a = Agent {
            child: None,
            dir,
            prefix,
            key: key.to_path_buf(),
            args,
            env,
            chassis_netns: chassis.netns().to_string(),
        };
        a.restart();
        a
    }

    /// (Re)start the process with the same state dir, prefix and log.
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.file("agent.out")).unwrap();
        let child = Command::new(tool("nsenter"))
            .arg(format!("--net=/run/netns/{}", self.chassis_netns))
            .arg(bin())
            .args(&self.args)
            .env("CLOUDSTACK_OVN_LOG", self.log_path())
            .env("CLOUDSTACK_OVN_LOG_LEVEL", "debug")
            .env("CLOUDSTACK_OVN_CONFIG", "/nonexistent")
            .env("CLOUDSTACK_OVN_METADATA_KEY", &self.key)
            .env_remove("OVN_NB_DB")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start cloudstack-ovn agent");
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Resident set size of the agent process (VmRSS), in KiB.
    pub fn rss_kb(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
    }

    /// The agent's acknowledgements file (`password-acks.json` in its state dir).
    pub fn ack_file(&self) -> PathBuf {
        self.dir.file("state").join("password-acks.json")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.file("agent.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn out(&self) -> String {
        std::fs::read_to_string(self.dir.file("agent.out")).unwrap_or_default()
    }

    /// Namespace name of `network` on this host.
    pub fn netns(&self, network: u32) -> String {
        format!("{}{network}", self.prefix)
    }

    pub fn namespaces(&self) -> Vec<String> {
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&self.prefix))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- agent log:\n{}\n--- agent stdout/stderr:\n{}", self.log(), self.out());
        }
        for ns in self.namespaces() {
            let _ = Command::new(tool("ip")).args(["netns", "del", &ns]).status();
        }
        let _ = Duration::from_secs(0);
    }
}
