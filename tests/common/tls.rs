//! An NB served over mutual TLS with certificates made by `ovs-pki` (which
//! never name the host), plus a second, unrelated CA for negative tests.

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
        let (server, _) = standalone_ovsdb(
            dir.path(),
            "nb",
            OVN_NB_SCHEMA,
            &[
                "--remote=pssl:0:127.0.0.1".to_string(),
                format!("--private-key={}", dir.file("nb-privkey.pem").display()),
                format!("--certificate={}", dir.file("nb-cert.pem").display()),
                format!("--ca-cert={}", dir.file("pki/switchca/cacert.pem").display()),
            ],
        );
        let port = server.listening_port();
        let nb = TlsNb { _server: server, port, dir };
        nb.nbctl(&["init"]);
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

    /// A client key and certificate signed by [`TlsNb::other_ca`]: the
    /// server must refuse them.
    pub fn rogue_key(&self) -> PathBuf {
        self.dir.file("rogue-privkey.pem")
    }

    pub fn rogue_cert(&self) -> PathBuf {
        self.dir.file("rogue-cert.pem")
    }

    /// `ovn-nbctl` over the plain unix socket; panics on failure, returns
    /// trimmed stdout.
    pub fn nbctl(&self, args: &[&str]) -> String {
        run_ok(ovs_command(self.dir.path(), "ovn-nbctl").arg(format!("--db={}", self.unix_remote())).args(args))
    }
}
