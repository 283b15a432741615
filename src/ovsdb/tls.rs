//! TLS for `ssl:` remotes (rustls, ring provider).
//!
//! Trust model: the same as OVS stream-ssl. The server's chain must verify
//! against the configured CA, but the certificate need not name the host:
//! `ovs-pki` certificates carry a SAN like `DNS:ovnnb id:<uuid>` that never
//! matches the address we dial, so WebPKI host-name checking would reject
//! every OVS deployment. Only the name check is waived; an unknown issuer,
//! expiry or a bad signature still fail. `ca_cert = "none"` disables
//! verification entirely, like `ovn-nbctl -C none`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{Deadline, Error};

/// The PEM files for `ssl:` remotes, as `ovn-nbctl -p/-c/-C`.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// Client private key (PKCS#8, PKCS#1 or SEC1 PEM).
    pub private_key: Option<PathBuf>,
    /// Client certificate chain (PEM; leading `openssl x509 -text` output is
    /// skipped).
    pub certificate: Option<PathBuf>,
    /// CA certificate(s) the server must chain to, or the literal `none`.
    pub ca_cert: Option<PathBuf>,
}

fn required<'a>(p: &'a Option<PathBuf>, what: &str) -> Result<&'a Path, Error> {
    let path = p.as_deref().ok_or_else(|| Error::Tls(format!("ssl: remotes need a {what} file")))?;
    // PEM text pasted where a file name belongs: say so without echoing it.
    if path.as_os_str().as_encoded_bytes().windows(10).any(|w| w == b"-----BEGIN") {
        return Err(Error::Tls(format!("the {what} setting holds PEM text; it must name a file")));
    }
    Ok(path)
}

/// A PEM file's content, read within the deadline (a FIFO is refused, not
/// waited on) and at most 1 MiB.
fn read_pem(path: &Path, deadline: Deadline) -> Result<Vec<u8>, Error> {
    crate::files::read(path, crate::files::MAX_SMALL_FILE, deadline.remaining()?).map_err(|e| match e {
        crate::files::ReadError::Deadline(_) => Error::DeadlineExceeded,
        e => Error::Tls(e.to_string()),
    })
}

/// Build the client configuration. All three files are required: the OVS
/// server asks for a client certificate, and silently skipping verification
/// must be an explicit `none`.
pub(crate) fn client_config(files: &TlsFiles, deadline: Deadline) -> Result<Arc<ClientConfig>, Error> {
    let key_path = required(&files.private_key, "private key")?;
    let cert_path = required(&files.certificate, "certificate")?;
    let ca_path = required(&files.ca_cert, "CA certificate")?;

    let file_err = |p: &Path, e: &dyn std::fmt::Display| Error::Tls(format!("{}: {e}", p.display()));
    let key = PrivateKeyDer::from_pem_slice(&read_pem(key_path, deadline)?).map_err(|e| match e {
        pem::Error::NoItemsFound => file_err(key_path, &"no PEM private key found"),
        e => file_err(key_path, &e),
    })?;
    let certs = load_certs(cert_path, deadline)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = if ca_path == Path::new("none") {
        None
    } else {
        let mut roots = RootCertStore::empty();
        for c in load_certs(ca_path, deadline)? {
            roots.add(c).map_err(|e| file_err(ca_path, &e))?;
        }
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| file_err(ca_path, &e))?;
        Some(v)
    };
    let verifier = Arc::new(OvsVerifier { chain, provider: provider.clone() });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(certs, key)
        .map_err(|e| Error::Tls(format!("{} / {}: {e}", cert_path.display(), key_path.display())))?;
    Ok(Arc::new(config))
}

fn load_certs(path: &Path, deadline: Deadline) -> Result<Vec<CertificateDer<'static>>, Error> {
    let err = |e: &dyn std::fmt::Display| Error::Tls(format!("{}: {e}", path.display()));
    let pem = read_pem(path, deadline)?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| err(&e))?;
    if certs.is_empty() {
        return Err(err(&"no PEM certificate found"));
    }
    Ok(certs)
}

/// The server name for SNI and (waived) name checks: an IP address when the
/// host is one (an IPv6 `%scope` suffix is dropped), a DNS name otherwise.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    let bare = host.split('%').next().unwrap_or(host);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string()).map_err(|e| Error::Tls(format!("host {host:?}: {e}")))
}

/// Turn a rustls failure into a short, greppable message.
pub(crate) fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => format!("certificate verify failed: {c:?}"),
        other => format!("handshake failed: {other}"),
    }
}

/// The OVS trust model (see module docs): WebPKI chain verification with
/// the host-name check waived, or no certificate check at all for `-C none`
/// (`chain: None`). Handshake signatures are always checked, so the peer
/// must hold the key of the certificate it presents.
#[derive(Debug)]
struct OvsVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for OvsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // WebPkiServerVerifier checks the name only after the chain, so a
        // NotValidForName* error implies the chain itself verified.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let d = Deadline::after(std::time::Duration::from_secs(5));
        let none = TlsFiles::default();
        assert!(matches!(client_config(&none, d), Err(Error::Tls(m)) if m.contains("private key")));
        let files = TlsFiles {
            private_key: Some("/nonexistent/key.pem".into()),
            certificate: Some("/nonexistent/cert.pem".into()),
            ca_cert: Some("none".into()),
        };
        let e = client_config(&files, d).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/key.pem"), "{e}");
        let pasted = TlsFiles { private_key: Some("-----BEGIN PRIVATE KEY-----\nMIIx".into()), ..files };
        let e = client_config(&pasted, d).unwrap_err().to_string();
        assert!(e.contains("holds PEM text") && !e.contains("MIIx"), "{e}");
    }

    #[test]
    fn server_names() {
        assert!(matches!(server_name("127.0.0.1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("fe80::1%eth0"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("nb.example.org"), Ok(ServerName::DnsName(_))));
    }
}
