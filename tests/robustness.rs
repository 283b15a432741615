//! Process-level robustness (issue 9 #3, #7, #11, #14), against the built
//! binary: every wait is bounded by the command's timeout (a stalled NB
//! beyond its listen backlog, FIFOs where files are expected), secrets
//! never reach stdout or the log, input size is bounded, and the log file
//! follows its rules (never stdout/stderr, created 0640).

mod common;

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::scenario::*;
use common::*;
use serde_json::{json, Value};

/// A run of the binary: its output, how long it took and its log.
struct Ran {
    out: Output,
    took: Duration,
    log: String,
}

impl Ran {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    /// Exactly one JSON error line on stdout, nothing on stderr.
    fn error_line(&self) -> Value {
        let stdout = self.stdout();
        assert!(self.out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&self.out.stderr));
        assert_eq!(stdout.trim_end().lines().count(), 1, "one line expected:\n{stdout}");
        let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(v["status"], "error", "{stdout}");
        v
    }
}

/// A scratch dir with a log file, removed on drop.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Scratch {
        Scratch(tempfile::Builder::new().prefix("csovn-robust-").tempdir_in("/tmp").unwrap())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn payload(&self, doc: &Value) -> PathBuf {
        let p = self.path("cmd.payload");
        std::fs::write(&p, doc.to_string()).unwrap();
        p
    }

    fn fifo(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        let st = Command::new("mkfifo").arg(&p).status().expect("mkfifo");
        assert!(st.success());
        p
    }

    /// Run the binary with `args`, `OVN_NB_DB=nb`, the log in this dir (or
    /// `log`), extra `env`; killed (and the test failed) after `limit`.
    fn run(&self, nb: &str, args: &[OsString], env: &[(&str, OsString)], limit: Duration) -> Ran {
        let log = self.path("cloudstack-ovn.log");
        let mut c = Command::new(bin());
        c.args(args)
            .current_dir(self.0.path())
            .env("OVN_NB_DB", nb)
            .env("CLOUDSTACK_OVN_LOG", &log)
            .env("CLOUDSTACK_OVN_LOG_LEVEL", "debug")
            .env("CLOUDSTACK_OVN_CONFIG", "/nonexistent")
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let started = Instant::now();
        let out = try_run(&mut c, limit).unwrap_or_else(|e| panic!("{e}"));
        let took = started.elapsed();
        Ran { out, took, log: std::fs::read_to_string(&log).unwrap_or_default() }
    }
}

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

fn path_arg(p: &Path) -> OsString {
    p.as_os_str().to_owned()
}

/// Fill the listen backlog of a stalled unix-socket server: connect until a
/// connect no longer completes (those blocked connects stay queued in
/// helper threads that end when the server resumes or dies).
fn fill_backlog(socket: &str) -> Vec<UnixStream> {
    let mut held = Vec::new();
    for _ in 0..4096 {
        let (tx, rx) = mpsc::channel();
        let path = socket.to_string();
        std::thread::spawn(move || {
            let _ = tx.send(UnixStream::connect(path));
        });
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => panic!("connect to the stalled server failed instead of blocking: {e}"),
            Err(_) => return held,
        }
    }
    panic!("the listen backlog never filled ({} connections)", held.len());
}

/// Issue 9 #3: with the NB stalled and its backlog full, connect(2) on a
/// unix socket blocks; the command must still end within its timeout.
#[test]
fn stalled_unix_nb_beyond_its_backlog_ends_within_the_timeout() {
    let nb = Nb::start();
    let dir = Scratch::new();
    let payload = dir.payload(&registered(network(9)));
    nb.pause();
    let held = fill_backlog(nb.remote().strip_prefix("unix:").unwrap());
    let ran = dir.run(
        &nb.remote(),
        &[OsString::from("implement-network"), path_arg(&payload), OsString::from("3")],
        &[],
        Duration::from_secs(30),
    );
    nb.resume();
    drop(held);
    assert_eq!(ran.code(), Some(4), "{}", ran.stdout());
    let v = ran.error_line();
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("deadline exceeded") && msg.contains(&nb.remote()), "{v}");
    assert!(ran.took < Duration::from_secs(8), "took {:?} with a 3 s timeout", ran.took);
}

/// Issue 9 #3: a FIFO where a file is expected (payload, `--fw-rules-file`,
/// the config file, a TLS file) is refused at once instead of blocking.
#[test]
fn fifos_instead_of_files_are_refused_within_the_timeout() {
    let dir = Scratch::new();
    let fifo = dir.fifo("payload.fifo");
    let limit = Duration::from_secs(20);
    let ran = dir.run("unix:/nonexistent", &[OsString::from("prepare-nic"), path_arg(&fifo), "3".into()], &[], limit);
    assert_eq!(ran.code(), Some(2), "{}", ran.stdout());
    let msg = ran.error_line()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("not a regular file"), "{msg}");

    let mut args = os(&["apply-fw-rules", "--network-id", "9", "--timeout", "3", "--fw-rules-file"]);
    args.push(path_arg(&fifo));
    let ran = dir.run("unix:/nonexistent", &args, &[], limit);
    assert_eq!(ran.code(), Some(2), "{}", ran.stdout());
    assert!(ran.error_line()["message"].as_str().unwrap().contains("not a regular file"));

    let payload = dir.payload(&registered(network(9)));
    let ran = dir.run(
        "unix:/nonexistent",
        &[OsString::from("implement-network"), path_arg(&payload), "3".into()],
        &[("CLOUDSTACK_OVN_CONFIG", path_arg(&fifo))],
        limit,
    );
    assert_eq!(ran.code(), Some(3), "{}", ran.stdout());
    assert!(ran.error_line()["message"].as_str().unwrap().contains("not a regular file"));

    let ran = dir.run(
        "ssl:127.0.0.1:1",
        &[OsString::from("implement-network"), path_arg(&payload), "3".into()],
        &[
            ("OVN_NB_PRIVATE_KEY", path_arg(&fifo)),
            ("OVN_NB_CERTIFICATE", path_arg(&fifo)),
            ("OVN_NB_CA_CERT", "none".into()),
        ],
        limit,
    );
    assert_eq!(ran.code(), Some(3), "{}", ran.stdout());
    assert!(ran.error_line()["message"].as_str().unwrap().contains("not a regular file"));
}

/// Issue 9 #14: a refused TCP connect says so and names the remote, even
/// when retrying it used up the whole timeout.
#[test]
fn refused_tcp_connect_says_connection_refused_and_names_the_remote() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = Scratch::new();
    let payload = dir.payload(&registered(network(9)));
    let remote = format!("tcp:127.0.0.1:{port}");
    let ran = dir.run(
        &remote,
        &[OsString::from("implement-network"), path_arg(&payload), "2".into()],
        &[],
        Duration::from_secs(20),
    );
    assert_eq!(ran.code(), Some(4), "{}", ran.stdout());
    let msg = ran.error_line()["message"].as_str().unwrap().to_ascii_lowercase();
    assert!(msg.contains("connection refused") && msg.contains(&remote), "{msg}");
}

/// Issue 9 #14: the log never goes to stdout/stderr (or any non-regular
/// file), and a new log file is created 0640.
#[test]
fn log_file_is_never_stdout_or_stderr_and_is_created_0640() {
    let dir = Scratch::new();
    for target in ["/dev/stdout", "/dev/stderr", "/proc/self/fd/1", "/dev/null"] {
        let ran = dir.run("unix:/nonexistent", &os(&["no-such-command"]), &[("CLOUDSTACK_OVN_LOG", target.into())], {
            Duration::from_secs(20)
        });
        assert_eq!(ran.code(), Some(2), "{target}: {}", ran.stdout());
        ran.error_line();
    }
    let fifo = dir.fifo("log.fifo");
    let ran = dir.run("unix:/nonexistent", &os(&["no-such-command"]), &[("CLOUDSTACK_OVN_LOG", path_arg(&fifo))], {
        Duration::from_secs(20)
    });
    assert_eq!(ran.code(), Some(2), "{}", ran.stdout());

    let ran = dir.run("unix:/nonexistent", &os(&["no-such-command"]), &[], Duration::from_secs(20));
    assert_eq!(ran.code(), Some(2));
    assert!(ran.log.contains("unknown command"), "{}", ran.log);
    let mode = std::fs::metadata(dir.path("cloudstack-ovn.log")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "log file mode {mode:o}");
}

const PEM_BODY: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7secretbody";

/// Issue 9 #7: secrets never reach stdout or the log (at debug level): a PEM
/// pasted into `ovn.nb.private_key`, secret-looking registration keys, a
/// legacy `--password` whose value starts with `--`, a malformed config.
#[test]
fn secrets_reach_neither_stdout_nor_the_log() {
    let dir = Scratch::new();
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n");
    let mut doc = registered(network(9));
    let details = doc["physical-network-extension-details"].as_object_mut().unwrap();
    details.insert("ovn.nb.private_key".into(), json!(pem));
    details.insert("ovn.nb.certificate".into(), json!("/nonexistent/cert.pem"));
    details.insert("ovn.nb.ca_cert".into(), json!("none"));
    let secrets = [
        ("passwd", "s3cret-passwd"),
        ("pwd", "s3cret-pwd"),
        ("ssh.key", "s3cret-ssh-key"),
        ("api.key", "s3cret-api-key"),
        ("passphrase", "s3cret-passphrase"),
        ("credentials", "s3cret-credentials"),
        ("auth", "s3cret-auth"),
        ("token", "s3cret-token"),
        ("x.secret_key", "s3cret-secret-key"),
    ];
    for (k, v) in secrets {
        details.insert(k.into(), json!(v));
    }
    let payload = dir.payload(&doc);
    let ran = dir.run(
        "ssl:127.0.0.1:1",
        &[OsString::from("implement-network"), path_arg(&payload), "3".into()],
        &[],
        Duration::from_secs(20),
    );
    assert_eq!(ran.code(), Some(3), "{}", ran.stdout());
    ran.error_line();
    assert!(ran.log.contains("level=debug"), "the log must be at debug level:\n{}", ran.log);
    for (what, text) in [("stdout", ran.stdout()), ("log", ran.log.clone())] {
        assert!(!text.contains("secretbody") && !text.contains("BEGIN PRIVATE"), "PEM in {what}:\n{text}");
        for (k, v) in secrets {
            assert!(!text.contains(v), "{k} in {what}:\n{text}");
        }
    }

    // Legacy flags: a password that looks like a flag is still the password.
    let ran = dir.run(
        "unix:/nonexistent",
        &os(&["save-password", "--network-id", "9", "--password", "--Pa55word-looks-like-a-flag", "--nic-id", "3"]),
        &[],
        Duration::from_secs(20),
    );
    assert_eq!(ran.code(), Some(6), "{}", ran.stdout());
    assert!(!ran.stdout().contains("Pa55word") && !ran.log.contains("Pa55word"), "{}\n{}", ran.stdout(), ran.log);
    assert!(ran.log.contains("not supported"), "{}", ran.log);

    // A malformed config file: the error names the line, not its content.
    let config = dir.path("config.toml");
    std::fs::write(&config, "[ovn.nb]\nconnection = \"unix:/x\"\nssh_password = \"hunter2-in-config\n").unwrap();
    let ran = dir.run(
        "unix:/nonexistent",
        &[OsString::from("implement-network"), path_arg(&payload), "3".into()],
        &[("CLOUDSTACK_OVN_CONFIG", path_arg(&config))],
        Duration::from_secs(20),
    );
    assert_eq!(ran.code(), Some(3), "{}", ran.stdout());
    let msg = ran.error_line()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("config.toml") && msg.contains("line 3"), "{msg}");
    assert!(!ran.stdout().contains("hunter2") && !ran.log.contains("hunter2"), "{}\n{}", ran.stdout(), ran.log);
}

/// Issue 9 #11: a payload beyond the cap is refused before it is parsed;
/// an invalid huge field is quoted only in part, on stdout and in the log.
#[test]
fn input_size_is_bounded() {
    let dir = Scratch::new();
    let limit = Duration::from_secs(60);
    let mut big = registered(network(9));
    big["payload"]["padding"] = json!("x".repeat(20 << 20));
    let payload = dir.payload(&big);
    let ran = dir.run("unix:/nonexistent", &[OsString::from("implement-network"), path_arg(&payload)], &[], limit);
    assert_eq!(ran.code(), Some(2), "{}", &ran.stdout()[..ran.stdout().len().min(500)]);
    let msg = ran.error_line()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("larger than") && msg.contains("MiB"), "{msg}");

    let mut bad = registered(network(9));
    bad["payload"]["network_id"] = json!("7".repeat(4 << 20));
    let payload = dir.payload(&bad);
    let ran = dir.run("unix:/nonexistent", &[OsString::from("implement-network"), path_arg(&payload)], &[], limit);
    assert_eq!(ran.code(), Some(2), "{}", &ran.stdout()[..ran.stdout().len().min(500)]);
    let msg = ran.error_line()["message"].as_str().unwrap().to_string();
    assert!(msg.len() < 2048 && msg.contains("network_id") && msg.contains("bytes"), "{} bytes", msg.len());
    assert!(ran.log.lines().all(|l| l.len() < 4096), "a log line of {} bytes", ran.log.len());
}

/// Issue 9 #4: a panic (anywhere) is one JSON line on stdout, nothing on
/// stderr, exit 1 (debug builds panic on request; the release profile's
/// `panic = "abort"` runs the same hook, which exits before the abort).
#[test]
fn a_panic_is_one_json_line_and_exit_1() {
    let dir = Scratch::new();
    let ran = dir.run(
        "unix:/nonexistent",
        &os(&["implement-network"]),
        &[("CLOUDSTACK_OVN_TEST_PANIC", "1".into())],
        Duration::from_secs(20),
    );
    assert_eq!(ran.code(), Some(1), "{}", ran.stdout());
    let msg = ran.error_line()["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("internal error: panic requested"), "{msg}");
}
