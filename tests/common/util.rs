//! Process helpers shared by the harness: tool lookup, temp dirs, bounded
//! command execution, unique names, network namespaces, polling.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The message every "binary missing" panic starts with.
pub const INSTALL_HINT: &str = "OVN is not installed: run scripts/install-deps.sh";

pub(crate) const OVN_NB_SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";
pub(crate) const OVN_SB_SCHEMA: &str = "/usr/share/ovn/ovn-sb.ovsschema";
pub(crate) const OVS_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Default deadline for one helper command (ctl tools also get `--timeout`).
pub(crate) const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// Directories searched after `$PATH` (a non-login root shell may lack sbin).
const EXTRA_PATH: &[&str] = &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

fn lookup(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(EXTRA_PATH.iter().map(PathBuf::from)).map(|d| d.join(name)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.is_file() && m.permissions().mode() & 0o111 != 0
        })
    })
}

fn cache() -> &'static Mutex<HashMap<String, Option<PathBuf>>> {
    static C: OnceLock<Mutex<HashMap<String, Option<PathBuf>>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

fn resolve(name: &str) -> Option<PathBuf> {
    let mut c = cache().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    c.entry(name.to_string()).or_insert_with(|| lookup(name)).clone()
}

/// Absolute path of a required tool; panics with [`INSTALL_HINT`] if missing.
pub(crate) fn tool(name: &str) -> PathBuf {
    resolve(name).unwrap_or_else(|| panic!("{INSTALL_HINT} (`{name}` not found in $PATH or sbin)"))
}

/// Panics (listing everything missing) unless all `names` and `files` exist.
pub(crate) fn require(names: &[&str], files: &[&str]) {
    let mut missing: Vec<String> =
        names.iter().filter(|n| resolve(n).is_none()).map(|n| format!("binary `{n}`")).collect();
    missing.extend(files.iter().filter(|f| !Path::new(f).is_file()).map(|f| format!("file {f}")));
    if !missing.is_empty() {
        panic!("{INSTALL_HINT} (missing: {})", missing.join(", "));
    }
}

/// A process-wide counter for unique names.
pub(crate) fn next_id() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Short unique name `cso<pid><tag><n>` (network namespaces).
pub(crate) fn unique_name(tag: char) -> String {
    format!("cso{}{}{}", std::process::id(), tag, next_id())
}

/// Poll `f` (5 ms, doubling, at most 50 ms between calls) until it returns
/// true or `timeout` has passed. Returns whether `f` succeeded.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut step = Duration::from_millis(5);
    loop {
        if f() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(step.min(deadline - now));
        step = (step * 2).min(Duration::from_millis(50));
    }
}

/// A per-component temp dir under /tmp, removed on drop unless
/// `CSOVN_KEEP_TMP` is set.
pub(crate) struct LabDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl LabDir {
    pub(crate) fn new(kind: &str) -> LabDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("csovn-{kind}-{}-{}-", std::process::id(), next_id()))
            .tempdir_in("/tmp")
            .expect("create temp dir under /tmp");
        let path = dir.path().to_path_buf();
        LabDir { dir: Some(dir), path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for LabDir {
    fn drop(&mut self) {
        if std::env::var_os("CSOVN_KEEP_TMP").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("[harness] keeping {}", d.path().display());
                // Leak the guard: the directory stays (works on every tempfile 3.x).
                std::mem::forget(d);
            }
        }
    }
}

/// A command for an OVS/OVN tool with every default directory pointed at
/// `dir`, and no inherited OVN_* database/daemon variables.
pub(crate) fn ovs_command(dir: &Path, name: &str) -> Command {
    let mut c = Command::new(tool(name));
    ovs_env(&mut c, dir);
    c
}

pub(crate) fn ovs_env(c: &mut Command, dir: &Path) {
    for v in [
        "OVS_RUNDIR",
        "OVS_LOGDIR",
        "OVS_DBDIR",
        "OVS_SYSCONFDIR",
        "OVN_RUNDIR",
        "OVN_LOGDIR",
        "OVN_DBDIR",
        "OVN_SYSCONFDIR",
    ] {
        c.env(v, dir);
    }
    for v in ["OVN_NB_DB", "OVN_SB_DB", "OVN_NB_DAEMON", "OVN_SB_DAEMON", "OVS_NB_DB"] {
        c.env_remove(v);
    }
    c.stdin(Stdio::null());
}

/// `ip netns exec NS <tool> ...` with the OVS environment for `dir`.
pub(crate) fn ovs_command_in(dir: &Path, netns: &str, name: &str) -> Command {
    let mut c = Command::new(tool("ip"));
    c.arg("netns").arg("exec").arg(netns).arg(tool(name));
    ovs_env(&mut c, dir);
    c
}

pub(crate) fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|ch: char| ch.is_whitespace() || "\"'{}$;&|*".contains(ch)) {
            s.push_str(" '");
            s.push_str(&a);
            s.push('\'');
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// Run `c` with piped stdout/stderr; kill it (our own child, by its handle)
/// if it is still running after `timeout`.
pub fn try_run(c: &mut Command, timeout: Duration) -> Result<Output, String> {
    let desc = describe(c);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("cannot start `{desc}`: {e}"))?;
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let mut step = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let so = t_out.join().unwrap_or_default();
                let se = t_err.join().unwrap_or_default();
                return Err(format!(
                    "`{desc}` did not finish within {timeout:?}; killed\n--- stdout:\n{}\n--- stderr:\n{}",
                    String::from_utf8_lossy(&so),
                    String::from_utf8_lossy(&se)
                ));
            }
            Ok(None) => {
                std::thread::sleep(step);
                step = (step * 2).min(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("waiting for `{desc}`: {e}")),
        }
    };
    Ok(Output { status, stdout: t_out.join().unwrap_or_default(), stderr: t_err.join().unwrap_or_default() })
}

/// [`try_run`] that panics if the command cannot be started or times out.
pub(crate) fn run(c: &mut Command, timeout: Duration) -> Output {
    try_run(c, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Run and require success; returns trimmed stdout.
pub(crate) fn run_ok(c: &mut Command) -> String {
    let desc = describe(c);
    let o = run(c, CMD_TIMEOUT);
    if !o.status.success() {
        panic!(
            "`{desc}` failed ({})\n--- stdout:\n{}\n--- stderr:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout).trim_end(),
            String::from_utf8_lossy(&o.stderr).trim_end()
        );
    }
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Last `n` lines of a text file ("" if unreadable).
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Print the tails of `files` (only used while a test is panicking).
pub(crate) fn dump_logs(what: &str, files: &[PathBuf]) {
    for f in files {
        let t = tail(f, 25);
        if !t.is_empty() {
            eprintln!("[harness] {what}: last lines of {}:\n{t}", f.display());
        }
    }
}

/// A network namespace we created; deleted (with every interface still in
/// it, e.g. a veth end) on drop.
pub(crate) struct Netns {
    name: String,
}

impl Netns {
    pub(crate) fn create(tag: char) -> Netns {
        let name = unique_name(tag);
        run_ok(Command::new(tool("ip")).args(["netns", "add", &name]));
        let ns = Netns { name };
        run_ok(Command::new(tool("ip")).args(["-n", &ns.name, "link", "set", "lo", "up"]));
        ns
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec` gives processes run in this namespace
    /// `/etc/netns/<name>/resolv.conf` as their `/etc/resolv.conf`.
    pub(crate) fn set_resolv_conf(&self, text: &str) {
        let dir = PathBuf::from("/etc/netns").join(&self.name);
        std::fs::create_dir_all(&dir).expect("create /etc/netns/<ns>");
        std::fs::write(dir.join("resolv.conf"), text).expect("write resolv.conf");
    }

    /// `program` run inside this namespace.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(tool("ip"));
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.name));
        let r = try_run(Command::new(tool("ip")).args(["netns", "del", &self.name]), Duration::from_secs(10));
        match r {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprintln!("[harness] ip netns del {} failed: {}", self.name, String::from_utf8_lossy(&o.stderr).trim())
            }
            Err(e) => eprintln!("[harness] {e}"),
        }
    }
}

/// A unix socket that accepts connections and never answers: the NB that
/// hangs. Its accept thread holds every connection until drop.
pub struct SilentPeer {
    remote: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    holder: Option<std::thread::JoinHandle<()>>,
    _dir: LabDir,
}

impl SilentPeer {
    pub fn start() -> SilentPeer {
        let dir = LabDir::new("silent");
        let sock = dir.file("silent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind the silent socket");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let holder = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SilentPeer { remote: format!("unix:{}", sock.display()), stop, holder: Some(holder), _dir: dir }
    }

    /// `unix:/tmp/csovn-silent-.../silent.sock`
    pub fn remote(&self) -> &str {
        &self.remote
    }
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.holder.take() {
            let _ = h.join();
        }
    }
}
