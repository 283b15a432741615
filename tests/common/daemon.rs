//! Detached OVS/OVN daemons, stopped by the pid in their own pidfile.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::util::{ovs_command, ovs_command_in, tail, wait_until};

/// How long a daemon may take to detach (its launcher returns once it is
/// ready, e.g. ovsdb-server listens).
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(20);
/// SIGTERM grace period before SIGKILL (as lib.sh stop_pidfile).
const TERM_GRACE: Duration = Duration::from_secs(5);

pub(crate) struct Daemon {
    name: String,
    pidfile: PathBuf,
    log: PathBuf,
    ctl: Option<PathBuf>,
    stderr: PathBuf,
    stopped: bool,
}

impl Daemon {
    /// Start `tool` with `--detach --no-chdir --pidfile --log-file
    /// [--unixctl] ARGS` (inside `netns` if given), files named
    /// `<dir>/<name>.{pid,log,ctl,stderr}`. Panics with the daemon's stderr
    /// and log tail if it does not come up.
    pub(crate) fn launch(
        dir: &Path,
        netns: Option<&str>,
        tool: &str,
        name: &str,
        unixctl: bool,
        args: &[&str],
    ) -> Daemon {
        let d = Daemon {
            name: name.to_string(),
            pidfile: dir.join(format!("{name}.pid")),
            log: dir.join(format!("{name}.log")),
            ctl: unixctl.then(|| dir.join(format!("{name}.ctl"))),
            stderr: dir.join(format!("{name}.stderr")),
            stopped: false,
        };
        let mut c = match netns {
            Some(ns) => ovs_command_in(dir, ns, tool),
            None => ovs_command(dir, tool),
        };
        c.arg("--detach")
            .arg("--no-chdir")
            .arg(format!("--pidfile={}", d.pidfile.display()))
            .arg(format!("--log-file={}", d.log.display()));
        if let Some(ctl) = &d.ctl {
            c.arg(format!("--unixctl={}", ctl.display()));
        }
        c.args(args);
        // Files, not pipes: the detached child would otherwise hold a pipe open.
        let f = File::create(&d.stderr).expect("create daemon stderr file");
        c.stdout(Stdio::from(f.try_clone().expect("dup stderr file")));
        c.stderr(Stdio::from(f));
        let desc = super::util::describe(&c);
        let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot start `{desc}`: {e}"));
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait for daemon launcher") {
                break st;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{desc}` did not detach within {LAUNCH_TIMEOUT:?}\n{}", d.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if !status.success() {
            panic!("`{desc}` failed ({status})\n{}", d.diagnostics());
        }
        if !d.pid().is_some_and(running) {
            panic!("`{desc}` exited right after start\n{}", d.diagnostics());
        }
        d
    }

    fn diagnostics(&self) -> String {
        format!(
            "--- {}:\n{}\n--- {}:\n{}",
            self.stderr.display(),
            tail(&self.stderr, 20),
            self.log.display(),
            tail(&self.log, 20)
        )
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    pub(crate) fn ctl(&self) -> Option<&Path> {
        self.ctl.as_deref()
    }

    pub(crate) fn pidfile(&self) -> &Path {
        &self.pidfile
    }

    /// The port the kernel chose for a `ptcp:0` / `pssl:0` remote, from
    /// the log line "listening on port N" (no bind-and-release race).
    pub(crate) fn listening_port(&self) -> u16 {
        let log = || std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(
            wait_until(LAUNCH_TIMEOUT, || log().contains("listening on port ")),
            "{} logged no listening port\n{}",
            self.name,
            self.diagnostics()
        );
        let log = log();
        let digits: String = log
            .split("listening on port ")
            .nth(1)
            .unwrap_or_default()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap_or_else(|_| panic!("no port in {}:\n{log}", self.log.display()))
    }

    /// The pid written in the pidfile, if any.
    pub(crate) fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pidfile).ok()?.trim().parse().ok()
    }

    /// Is the daemon (still) running?
    pub(crate) fn is_running(&self) -> bool {
        self.pid().is_some_and(|p| running(p) && mentions(p, &self.pidfile))
    }

    /// Send `sig` if the pid is ours (its cmdline mentions the pidfile).
    fn signal(&self, sig: &str) -> Option<u32> {
        let pid = self.pid()?;
        if !running(pid) || !mentions(pid, &self.pidfile) {
            return None;
        }
        kill(sig, pid);
        Some(pid)
    }

    pub(crate) fn stop(&mut self) {
        stop_all(&mut [self]);
    }

    /// SIGSTOP / SIGCONT: a server that is alive but answers nothing (its
    /// sockets still accept into the kernel backlog).
    pub(crate) fn pause(&self) -> Option<u32> {
        self.signal("STOP")
    }

    pub(crate) fn resume(&self) -> Option<u32> {
        self.signal("CONT")
    }

    /// SIGKILL (a crash, for failover tests); the pidfile stays for Drop.
    pub(crate) fn kill(&self) -> Option<u32> {
        self.signal("KILL")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM all (still running) daemons at once, wait for them (zombies
/// count as gone: PID 1 may reap slowly), SIGKILL stragglers after 5 s.
pub(crate) fn stop_all(ds: &mut [&mut Daemon]) {
    let mut pending: Vec<(usize, u32)> = Vec::new();
    for (i, d) in ds.iter().enumerate() {
        if d.stopped {
            continue;
        }
        // An OVS `--monitor` process (ovs-vswitchd's, see Chassis) exits
        // by itself once its daemon dies of SIGTERM: wait for it too.
        let monitor = d.pid().and_then(monitor_of);
        if let Some(pid) = d.signal("TERM") {
            // A paused daemon handles the TERM once continued.
            d.signal("CONT");
            pending.push((i, pid));
            pending.extend(monitor.map(|m| (i, m)));
        }
    }
    if !pending.is_empty() && !wait_until(TERM_GRACE, || pending.iter().all(|&(_, p)| !running(p))) {
        for &(i, pid) in &pending {
            if running(pid) && mentions(pid, &ds[i].pidfile) {
                eprintln!("[harness] {} (pid {pid}) ignored SIGTERM for {TERM_GRACE:?}, sending SIGKILL", ds[i].name);
                kill("KILL", pid);
            }
        }
        wait_until(Duration::from_secs(2), || pending.iter().all(|&(_, p)| !running(p)));
    }
    for d in ds.iter_mut() {
        // One stopped earlier may have a successor with the same pidfile
        // (Central::restart_databases): leave that file alone.
        if !d.stopped {
            d.stopped = true;
            let _ = std::fs::remove_file(&d.pidfile);
        }
    }
}

pub(crate) fn kill(sig: &str, pid: u32) {
    let _ = Command::new("/bin/sh")
        .args(["-c", "kill -s \"$0\" \"$1\" 2>/dev/null", sig, &pid.to_string()])
        .stdin(Stdio::null())
        .status();
}

/// True while `pid` exists and is not a zombie (detached daemons are
/// re-parented to PID 1, which may reap them late).
pub fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // "pid (comm) S ..." -- comm may contain spaces and parens.
            let state = s.rfind(')').and_then(|i| s[i + 1..].split_whitespace().next());
            !matches!(state, None | Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

/// The OVS `--monitor` process of daemon `pid`: its parent, which retitles
/// itself "monitoring pid <pid> (...)" (so its cmdline no longer names the
/// pidfile).
pub fn monitor_of(pid: u32) -> Option<u32> {
    let p = parent(pid).filter(|&p| p != 1)?;
    let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline).contains(&format!("monitoring pid {pid} ")).then_some(p)
}

/// The parent of `pid` (`/proc/PID/stat` field 4).
fn parent(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// Does `/proc/PID/cmdline` mention `path` (e.g. `--pidfile=<path>`)?
pub(crate) fn mentions(pid: u32, path: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = path.as_os_str().as_encoded_bytes();
    cmdline.split(|&b| b == 0).any(|arg| arg.windows(needle.len()).any(|w| w == needle))
}

/// Start again a server [`standalone_ovsdb`] made (same database file,
/// socket and pidfile names); the old one must be stopped.
pub(crate) fn relaunch_ovsdb(dir: &Path, name: &str) -> Daemon {
    let db = dir.join(format!("{name}.db"));
    let sock = dir.join(format!("{name}.sock"));
    let remote = format!("--remote=punix:{}", sock.display());
    Daemon::launch(dir, None, "ovsdb-server", name, true, &[&remote, &db.to_string_lossy()])
}

/// A standalone `ovsdb-server` for `schema` in `dir`: database `<name>.db`,
/// unix socket `<name>.sock` (returned as a `unix:` remote), and `extra`
/// server arguments (further remotes, TLS files).
pub(crate) fn standalone_ovsdb(dir: &Path, name: &str, schema: &str, extra: &[String]) -> (Daemon, String) {
    let db = dir.join(format!("{name}.db"));
    let sock = dir.join(format!("{name}.sock"));
    let mut c = ovs_command(dir, "ovsdb-tool");
    c.arg("create").arg(&db).arg(schema);
    super::util::run_ok(&mut c);
    let mut args = vec![format!("--remote=punix:{}", sock.display())];
    args.extend(extra.iter().cloned());
    args.push(db.to_string_lossy().into_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Daemon::launch(dir, None, "ovsdb-server", name, true, &args), format!("unix:{}", sock.display()))
}
