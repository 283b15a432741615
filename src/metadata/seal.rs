//! Secrets in the NB: X25519 sealed boxes (libsodium `crypto_box_seal`:
//! ephemeral X25519 + XSalsa20-Poly1305), so that reading the NB (operators,
//! backups, Raft snapshots, ovn-northd's memory) never reveals a password
//! or user data. The management side holds only the public key; the host
//! agents hold the private key.
//!
//! The plaintext binds the NIC and a generation: a ciphertext copied into
//! another NIC's row, or an old password replayed over a new generation, is
//! refused when opened.
//!
//! Idempotency without leaking: sealing is randomized, so a re-run cannot
//! compare ciphertexts. Beside each ciphertext we store a keyed BLAKE2b
//! digest of the plaintext intent. Its key (`ovn.metadata.digest_key`) is
//! derived one-way from the private key by `metadata-keygen`; an unkeyed or
//! public-key-derived digest would let anyone who reads the NB test
//! password guesses offline (CloudStack's default password has 6 chars).

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::Blake2bMac;
use crypto_box::aead::OsRng;
use crypto_box::{PublicKey, SecretKey};

use crate::error::{Error, Result};

/// Prefix of every sealed value: scheme and key generation 1. A rotated
/// key would be `s2:`, with the agent keeping both private keys.
pub const PREFIX: &str = "s1:";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What a sealed value holds; part of the bound plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secret {
    UserData,
    Password,
}

impl Secret {
    fn tag(self) -> &'static str {
        match self {
            Secret::UserData => "ud",
            Secret::Password => "pw",
        }
    }
}

/// The registration detail `ovn.metadata.public_key` (Base64 of 32 bytes).
pub fn parse_public_key(detail: &str, raw: &str) -> Result<PublicKey> {
    let bytes: [u8; 32] = B64
        .decode(raw.trim().as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Config(format!("{detail} must be Base64 of a 32-byte X25519 public key")))?;
    Ok(PublicKey::from(bytes))
}

/// The registration detail `ovn.metadata.digest_key` (Base64 of 32 bytes).
pub fn parse_digest_key(detail: &str, raw: &str) -> Result<[u8; 32]> {
    B64.decode(raw.trim().as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Config(format!("{detail} must be Base64 of 32 bytes (printed by metadata-keygen)")))
}

/// The agent's private key file: Base64 of 32 bytes.
pub fn read_secret_key(path: &Path) -> Result<SecretKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read metadata private key {}: {e}", path.display())))?;
    let bytes: [u8; 32] = B64
        .decode(text.trim().as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Config(format!("{}: not Base64 of a 32-byte X25519 key", path.display())))?;
    Ok(SecretKey::from(bytes))
}

pub fn public_key_b64(sk: &SecretKey) -> String {
    B64.encode(sk.public_key().as_bytes())
}

/// One-way: knowing the digest key tells nothing about the private key.
pub fn digest_key_of(sk: &SecretKey) -> [u8; 32] {
    use blake2::Digest;
    let mut h = blake2::Blake2b::<blake2::digest::consts::U32>::new();
    Digest::update(&mut h, b"cloudstack-ovn metadata digest v1\0");
    Digest::update(&mut h, sk.to_bytes());
    h.finalize().into()
}

pub fn digest_key_b64(sk: &SecretKey) -> String {
    B64.encode(digest_key_of(sk))
}

/// `metadata-keygen FILE`: a new private key written 0600 (never over an
/// existing file); returns the two registration details to set.
pub fn keygen(path: &Path) -> Result<(String, String)> {
    use std::os::unix::fs::OpenOptionsExt;
    let sk = SecretKey::generate(&mut OsRng);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", path.display())))?;
    writeln!(f, "{}", B64.encode(sk.to_bytes()))
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
    Ok((public_key_b64(&sk), digest_key_b64(&sk)))
}

fn bound(what: Secret, nic: &str, gen: &str, data: &[u8]) -> Vec<u8> {
    let mut p = format!("cloudstack-ovn/1\n{}\n{nic}\n{gen}\n", what.tag()).into_bytes();
    p.extend_from_slice(data);
    p
}

/// `s1:` + Base64(sealed box of the bound plaintext).
pub fn seal(pk: &PublicKey, what: Secret, nic: &str, gen: &str, data: &[u8]) -> Result<String> {
    let sealed =
        pk.seal(&mut OsRng, &bound(what, nic, gen, data)).map_err(|_| Error::Internal("sealing failed".into()))?;
    Ok(format!("{PREFIX}{}", B64.encode(sealed)))
}

/// Open a value sealed for this `nic` and `gen`; anything else (another
/// key, another NIC's row, another generation, a damaged value) fails.
pub fn open(sk: &SecretKey, what: Secret, nic: &str, gen: &str, value: &str) -> Option<Vec<u8>> {
    let raw = B64.decode(value.strip_prefix(PREFIX)?.as_bytes()).ok()?;
    let plain = sk.unseal(&raw).ok()?;
    let head = bound(what, nic, gen, &[]);
    plain.strip_prefix(head.as_slice()).map(<[u8]>::to_vec)
}

/// Keyed digest of a secret's intent, stored beside the ciphertext so a
/// repeated command can tell "same value" without being able to read it.
pub fn digest(key: &[u8; 32], what: Secret, nic: &str, data: &[u8]) -> Result<String> {
    // Fails only for keys over 64 bytes.
    let mut mac = Blake2bMac::<blake2::digest::consts::U16>::new_from_slice(key)
        .map_err(|_| Error::Internal("digest key too long".into()))?;
    mac.update(&bound(what, nic, "", data));
    let out: [u8; 16] = mac.finalize_fixed().into();
    Ok(out.iter().map(|b| format!("{b:02x}")).collect())
}

/// A fresh password generation: 64 random bits, hex.
pub fn new_generation() -> String {
    use crypto_box::aead::rand_core::RngCore;
    format!("{:016x}", OsRng.next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_nic_and_generation() {
        let sk = SecretKey::generate(&mut OsRng);
        let pk = sk.public_key();
        let v = seal(&pk, Secret::Password, "nic-a", "g1", b"s3cret").unwrap();
        assert!(v.starts_with("s1:") && !v.contains("s3cret"));
        assert_eq!(open(&sk, Secret::Password, "nic-a", "g1", &v).as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(open(&sk, Secret::Password, "nic-b", "g1", &v), None, "copied to another NIC");
        assert_eq!(open(&sk, Secret::Password, "nic-a", "g2", &v), None, "other generation");
        assert_eq!(open(&sk, Secret::UserData, "nic-a", "g1", &v), None, "other kind");
        let other = SecretKey::generate(&mut OsRng);
        assert_eq!(open(&other, Secret::Password, "nic-a", "g1", &v), None, "other key");
        // Randomized: the same plaintext seals differently every time.
        assert_ne!(v, seal(&pk, Secret::Password, "nic-a", "g1", b"s3cret").unwrap());
    }

    #[test]
    fn digests_are_keyed_and_stable() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        let d = digest(&k1, Secret::Password, "n", b"pw").unwrap();
        assert_eq!(d, digest(&k1, Secret::Password, "n", b"pw").unwrap());
        assert_ne!(d, digest(&k2, Secret::Password, "n", b"pw").unwrap());
        assert_ne!(d, digest(&k1, Secret::Password, "m", b"pw").unwrap());
        assert_eq!(d.len(), 32);
    }

    #[test]
    fn keygen_writes_a_private_file_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.key");
        let (public, dkey) = keygen(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let sk = read_secret_key(&path).unwrap();
        assert_eq!(public_key_b64(&sk), public);
        assert_eq!(digest_key_b64(&sk), dkey);
        assert!(parse_public_key("k", &public).is_ok());
        assert!(keygen(&path).is_err());
    }
}
