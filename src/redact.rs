//! Keeping secrets and oversize input out of stdout and the log, applied
//! centrally by [`crate::log`] (every level) and [`crate::output`] (every
//! error line), so that no call site has to remember it.
//!
//! * by key: values of secret-looking keys ([`is_secret_key`]) become `***`;
//! * by shape: PEM blocks (`-----BEGIN …-----` up to the matching `END`, or
//!   to the end of the text) become `[PEM redacted]`, wherever they appear;
//! * by size: a quoted value longer than [`MAX_QUOTED`] is cut with an
//!   ellipsis and its length, and a whole message is capped at [`MAX_MESSAGE`].

/// Longest `"…"` value quoted whole in a message.
pub const MAX_QUOTED: usize = 128;
/// Longest message (stdout error line, log `msg`), in bytes.
pub const MAX_MESSAGE: usize = 1024;

/// Parts of key names that mark a secret (compared after lower-casing and
/// mapping `.`, `-` and spaces to `_`): passwords, keys, tokens, user data.
const SECRET_PARTS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "auth",
    "sshkey",
    "ssh_key",
    "private_key",
    "privatekey",
    "api_key",
    "apikey",
    "userdata",
    "user_data",
    "cookie",
    "session",
];

/// Keys whose values never reach the log or stdout.
pub fn is_secret_key(key: &str) -> bool {
    let k: String =
        key.chars().map(|c| if matches!(c, '.' | '-' | ' ') { '_' } else { c.to_ascii_lowercase() }).collect();
    SECRET_PARTS.iter().any(|s| k.contains(s))
}

/// `text` with PEM blocks removed and long quoted values cut.
pub fn scrub(text: &str) -> String {
    cap_quoted(&strip_pem(text))
}

/// [`scrub`], then at most `max` bytes (cut at a character boundary, with
/// an ellipsis and the original length).
pub fn scrub_capped(text: &str, max: usize) -> String {
    cap(&scrub(text), max)
}

/// At most `max` bytes of `s`, marked `…(N bytes)` when cut.
pub fn cap(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &s[..end], s.len())
}

const PEM_BEGIN: &str = "-----BEGIN";

/// `text` with PEM blocks replaced by `[PEM redacted]`.
pub fn strip_pem(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    let mut rest = text;
    while let Some(start) = rest.find(PEM_BEGIN) {
        out.push_str(&rest[..start]);
        out.push_str("[PEM redacted]");
        let block = &rest[start..];
        // The block ends after "-----END <label>-----"; without one, the
        // rest of the text is part of it.
        rest = match block.find("-----END") {
            Some(e) => {
                let after = &block[e + 8..];
                match after.find("-----") {
                    Some(close) => &after[close + 5..],
                    None => "",
                }
            }
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Cut `"…"` segments (Rust `{:?}` quoting, as error messages use) longer
/// than [`MAX_QUOTED`].
fn cap_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    let mut chars = text.char_indices().peekable();
    let mut copied = 0;
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            continue;
        }
        // Find the closing quote, skipping backslash escapes.
        let mut end = None;
        while let Some((j, d)) = chars.next() {
            match d {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = Some(j);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else { break };
        let inner = &text[i + 1..end];
        if inner.len() > MAX_QUOTED {
            out.push_str(&text[copied..=i]);
            out.push_str(&cap(inner, MAX_QUOTED));
            copied = end;
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys() {
        for k in [
            "password",
            "ssh.password",
            "passwd",
            "pwd",
            "ssh.key",
            "sshkey",
            "api.key",
            "API-Key",
            "passphrase",
            "credentials",
            "auth",
            "x.auth_header",
            "token",
            "ovn.nb.private_key",
            "userdata",
            "client_secret",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["ovn.nb.connection", "network_id", "hosts", "ovn.nb.certificate", "ovn.nb.ca_cert", "vlan"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn pem_blocks_go_wherever_they_are() {
        let t = "TLS: -----BEGIN PRIVATE KEY-----\nMIIsecret\n-----END PRIVATE KEY-----\n: No such file";
        assert_eq!(scrub(t), "TLS: [PEM redacted]\n: No such file");
        assert_eq!(scrub("a -----BEGIN RSA PRIVATE KEY-----\\nMIIsecret"), "a [PEM redacted]");
        let two = "-----BEGIN A-----x-----END A----- and -----BEGIN B-----y-----END B-----.";
        assert_eq!(scrub(two), "[PEM redacted] and [PEM redacted].");
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let long = format!("invalid network_id: expected a numeric id, got {:?}", "7".repeat(5000));
        let s = scrub(&long);
        assert!(s.len() < 300 && s.ends_with("…(5000 bytes)\""), "{s}");
        assert_eq!(scrub(r#"got "a\"b" ok"#), r#"got "a\"b" ok"#);
        assert_eq!(cap("ééé", 3), "é…(6 bytes)");
        assert_eq!(scrub_capped(&"x".repeat(2000), 10), format!("{}…(2000 bytes)", "x".repeat(10)));
    }
}
