//! An NB served over mutual TLS with certificates made by `ovs-pki` (which
//! never name the host), plus a second, unrelated CA for negative tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use super::daemon::{standalone_ovsdb, Daemon};
use super::util::{ovs_command, require, run_ok, wait_until, LabDir, OVN_NB_SCHEMA};

pub struct TlsNb {
    _server: Daemon,
    port: u16,
    dir: Arc<LabDir>,
}

impl TlsNb {
    pub fn start() -> TlsNb {
        require(&["ovs-pki", "ovsdb-tool", "ovsdb-server", "ovn-nbctl"], &[OVN_NB_SCHEMA]);
        let dir = Arc::new(LabDir::new("tls"));
        // The other CA first: ovs-pki names CAs after the current second.
        for (pki, certs) in [("other", &["rogue"][..]), ("pki", &["nb", "client"][..])] {
            let pki_dir = dir.file(pki);
            run_ok(
                ovs_command(dir.path(), "ovs-pki")
                    .arg(format!("--dir={}", pki_dir.display()))
                    .arg("init")
                    .current_dir(dir.path()),
            );
            for cert in certs {
                run_ok(
                    ovs_command(dir.path(), "ovs-pki")
                        .arg(format!("--dir={}", pki_dir.display()))
                        .args(["req+sign", cert, "switch"])
                        .current_dir(dir.path()),
                );
            }
        }
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let (server, _) = standalone_ovsdb(
            dir.path(),
            "nb",
            OVN_NB_SCHEMA,
            &[
                format!("--remote=pssl:{port}:127.0.0.1"),
                format!("--private-key={}", dir.file("nb-privkey.pem").display()),
                format!("--certificate={}", dir.file("nb-cert.pem").display()),
                format!("--ca-cert={}", dir.file("pki/switchca/cacert.pem").display()),
            ],
        );
        let nb = TlsNb { _server: server, port, dir };
        run_ok(
            ovs_command(nb.dir.path(), "ovn-nbctl")
                .arg(format!("--db=unix:{}", nb.dir.file("nb.sock").display()))
                .arg("init"),
        );
        assert!(
            wait_until(std::time::Duration::from_secs(5), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        );
        nb
    }

    /// `ssl:127.0.0.1:<port>`
    pub fn remote(&self) -> String {
        format!("ssl:127.0.0.1:{}", self.port)
    }

    /// The plain unix socket, for checks with ovn-nbctl.
    pub fn unix_remote(&self) -> String {
        format!("unix:{}", self.dir.file("nb.sock").display())
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.file("client-privkey.pem")
    }

    pub fn client_cert(&self) -> PathBuf {
        self.dir.file("client-cert.pem")
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.file("pki/switchca/cacert.pem")
    }

    /// A CA that signed neither side.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.file("other/switchca/cacert.pem")
    }
}
