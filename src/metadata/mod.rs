//! UserData on OVN: the format the management side writes and the host
//! agent reads (docs/metadata.md).
//!
//! * Per network: a `localport` `cs-md-<network_id>` carrying the metadata
//!   address(es); DHCP `server_id` and option 121 point guests at it.
//! * Per NIC: one NB `DNS` row that no switch references (northd never
//!   propagates it), `_uuid` = the project's UUIDv5 of the NIC uuid, so the
//!   agent reads it by `_uuid`. Metadata files in clear under `md:<file>`;
//!   user data and password sealed ([`seal`]).
//!
//! Knows CloudStack's `vm_data` names and our row layout; no I/O.

pub mod seal;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use base64::Engine as _;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::nb::{Kind, Owner};

/// The link-local metadata address every cloud uses.
pub const MD_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// Registration details (management side).
pub const PUBLIC_KEY_DETAIL: &str = "ovn.metadata.public_key";
pub const DIGEST_KEY_DETAIL: &str = "ovn.metadata.digest_key";
pub const MAX_USERDATA_DETAIL: &str = "ovn.metadata.userdata_max_bytes";
/// What is stored per NIC: user data beyond this fails the command (the
/// bytes live in the NB Raft log and, up to OVN 24.09, in northd's memory).
pub const DEFAULT_MAX_USERDATA: usize = 64 * 1024;
pub const MAX_METADATA_VALUE: usize = 16 * 1024;
pub const MAX_PASSWORD: usize = 512;

/// `external_ids` keys of a vm-data row (besides the common
/// `cloudstack:owner`, `cloudstack:kind`, `cloudstack:network_id`, …).
pub mod key {
    pub const NIC_UUID: &str = crate::nb::key::NIC_UUID;
    /// `md:<file>`: one metadata file, value as CloudStack sent it.
    pub const MD_PREFIX: &str = "md:";
    /// Sealed user data.
    pub const USERDATA: &str = "ud";
    /// Keyed digest of the user data (idempotency).
    pub const USERDATA_DIGEST: &str = "ud-d";
    /// Sealed password, its generation and keyed digest.
    pub const PASSWORD: &str = "pw";
    pub const PASSWORD_GEN: &str = "pw-gen";
    pub const PASSWORD_DIGEST: &str = "pw-d";
    /// In SB `Chassis_Private.external_ids`: `cloudstack-ovn:pw-ack:<nic>`
    /// = the acknowledged `pw-gen`.
    pub const ACK_PREFIX: &str = "cloudstack-ovn:pw-ack:";
    /// In SB `Chassis_Private.external_ids`: the agent's version (liveness).
    pub const AGENT: &str = "cloudstack-ovn:md-agent";

    /// Keys of a vm-data row that hold VM data (ours to rewrite).
    pub fn is_data(k: &str) -> bool {
        k.starts_with(MD_PREFIX) || matches!(k, USERDATA | USERDATA_DIGEST | PASSWORD | PASSWORD_GEN | PASSWORD_DIGEST)
    }
}

/// `cs-md-<network_id>` (`cs-<owner>-md-<id>` for another owner, as
/// switch names): the metadata localport of a network, and the `iface-id`
/// the agent's veth carries.
pub fn port_name(owner: &Owner, network_id: u64) -> String {
    format!("{}md-{network_id}", owner.name_prefix())
}

/// The network id of a metadata localport name.
pub fn port_network(owner: &Owner, name: &str) -> Option<u64> {
    name.strip_prefix(&format!("{}md-", owner.name_prefix()))?.parse().ok()
}

/// The network id of a switch (SB datapath) name of ours.
pub fn switch_network(owner: &Owner, name: &str) -> Option<u64> {
    name.strip_prefix(&format!("{}net-", owner.name_prefix()))?.parse().ok()
}

pub fn port_uuid(owner: &Owner, network_id: u64) -> Uuid {
    owner.row_uuid(Kind::MetadataPort, &network_id.to_string())
}

/// The `_uuid` of a NIC's vm-data row: the agent computes it from the
/// Port_Binding's logical port (the NIC uuid) and the owner.
pub fn row_uuid(owner: &Owner, nic_uuid: &str) -> Uuid {
    owner.row_uuid(Kind::VmData, nic_uuid)
}

/// The metadata localport's MAC: the network's DHCP `server_mac`, so
/// DHCP answers and the metadata address share one MAC (as verified in the
/// lab, unicast renewals to the server id then reach OVN's responder).
pub fn port_mac(owner: &Owner, network_id: u64) -> String {
    owner.stable_mac(&format!("dhcp/{network_id}"))
}

/// Every vm-data row of a network: `external_ids includes {owner, kind,
/// network_id}`, a server-side scan of DNS (destroy-network only).
pub fn select_network_rows(owner: &Owner, network_id: u64) -> crate::ovsdb::Operation {
    use crate::nb::key as nbkey;
    use crate::ovsdb::{Condition, Function, Operation};
    let ids: BTreeMap<String, String> = [
        (nbkey::OWNER.to_string(), owner.0.clone()),
        (nbkey::KIND.to_string(), Kind::VmData.as_str().to_string()),
        (nbkey::NETWORK_ID.to_string(), network_id.to_string()),
    ]
    .into();
    Operation::Select {
        table: crate::nb::table::DNS.to_string(),
        conditions: vec![Condition("external_ids".into(), Function::Includes, crate::ovsdb::value::string_map(&ids))],
        columns: Some(crate::nb::rows::Dns::COLUMNS.iter().map(|c| c.to_string()).collect()),
    }
}

/// The SB table whose `external_ids` hold an agent's acknowledgements: a
/// chassis may write its own row (SB RBAC), and it has one row per chassis.
pub const ACK_TABLE: &str = "Chassis_Private";

/// `cloudstack-ovn:pw-ack:<nic>`: the key an agent's ack of `nic`'s
/// password lives under (its value is the acknowledged `pw-gen`).
pub fn ack_key(nic: &str) -> String {
    format!("{}{nic}", key::ACK_PREFIX)
}

/// The chassis that acknowledged generation `gen` of `nic`'s password:
/// `external_ids includes {ack_key(nic): gen}`, a server-side scan of
/// `Chassis_Private` (one row per chassis). Agents ask it before serving a
/// password, the management side before dropping one from the NB.
pub fn select_acks(nic: &str, gen: &str) -> crate::ovsdb::Operation {
    use crate::ovsdb::{Condition, Function, Operation};
    let ids: BTreeMap<String, String> = [(ack_key(nic), gen.to_string())].into();
    Operation::Select {
        table: ACK_TABLE.to_string(),
        conditions: vec![Condition("external_ids".into(), Function::Includes, crate::ovsdb::value::string_map(&ids))],
        columns: Some(vec!["name".to_string()]),
    }
}

/// One change to a NIC's VM data, as a command intends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// `Some(None)` = remove the user data, `Some(Some(b))` = set it.
    pub userdata: Option<Option<Vec<u8>>>,
    /// `Some(m)` = the metadata files are exactly `m` (save-vm-data).
    pub metadata: Option<BTreeMap<String, String>>,
    /// Files to set (or remove, when empty) besides the others.
    pub files: BTreeMap<String, String>,
    /// A new password (reset); `None` keeps the stored one.
    pub password: Option<String>,
}

/// CloudStack's `vm_data` (§6.4): entries `{dir, file, content}` (or
/// `[dir, file, content]` arrays, as Java serializes `String[]`).
/// `legacy`: contents may be Base64 (the A1 `--vm-data-file`).
pub fn parse_vm_data(field: &str, doc: &Value, legacy: bool, max_userdata: usize) -> Result<Update> {
    let Value::Array(entries) = doc else {
        return Err(Error::field(field, "must be an array of {dir, file, content}"));
    };
    let mut u = Update { userdata: Some(None), metadata: Some(BTreeMap::new()), ..Update::default() };
    for (i, e) in entries.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let (dir, file, content) = entry(&at, e)?;
        match (dir.as_str(), file.as_str()) {
            ("userdata", "user_data" | "user-data" | "userdata") => {
                let bytes = if legacy { base64_or_raw(&content) } else { content.into_bytes() };
                u.userdata = Some(userdata_value(&at, bytes, max_userdata)?);
            }
            ("metadata", f) => {
                let f = file_name(&at, f)?;
                let v = if legacy { base64_text_or_raw(&content) } else { content };
                if v.len() > MAX_METADATA_VALUE {
                    return Err(Error::field(&at, format!("metadata file {f} exceeds {MAX_METADATA_VALUE} bytes")));
                }
                if !v.is_empty() {
                    u.metadata.get_or_insert_with(BTreeMap::new).insert(f, v);
                }
            }
            // Only Windows templates get an MD5 of the (6-char by default)
            // password: reversible in seconds, so never stored or served.
            ("password", "vm-password-md5checksum") => {}
            ("password", "vm_password" | "vm-password") => {
                let pw = if legacy { base64_text_or_raw(&content) } else { content };
                if !pw.is_empty() {
                    u.password = Some(password_value(&at, pw)?);
                }
            }
            (d, f) => return Err(Error::field(&at, format!("unknown vm_data entry {d}/{f}"))),
        }
    }
    Ok(u)
}

fn entry(at: &str, e: &Value) -> Result<(String, String, String)> {
    let s = |v: Option<&Value>, what: &str| -> Result<String> {
        match v {
            Some(Value::String(s)) => Ok(s.clone()),
            None | Some(Value::Null) if what == "content" => Ok(String::new()),
            _ => Err(Error::field(at, format!("{what} must be a string"))),
        }
    };
    match e {
        Value::Object(o) => Ok((s(o.get("dir"), "dir")?, s(o.get("file"), "file")?, s(o.get("content"), "content")?)),
        Value::Array(a) if a.len() == 3 || a.len() == 2 => {
            Ok((s(a.first(), "dir")?, s(a.get(1), "file")?, s(a.get(2), "content")?))
        }
        _ => Err(Error::field(at, "must be {dir, file, content}")),
    }
}

/// Metadata file names become URL path segments and NB keys.
pub fn file_name(at: &str, f: &str) -> Result<String> {
    let ok = !f.is_empty()
        && f.len() <= 128
        && f.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !f.starts_with('.');
    if ok {
        Ok(f.to_string())
    } else {
        Err(Error::field(at, format!("invalid metadata file name {f:?}")))
    }
}

pub fn userdata_value(at: &str, bytes: Vec<u8>, max: usize) -> Result<Option<Vec<u8>>> {
    if bytes.len() > max {
        // Not Error::field: reasons about secret fields are withheld, and
        // a size reveals nothing.
        return Err(Error::Payload(format!(
            "{at}: user data is {} bytes, more than the {max} allowed ({MAX_USERDATA_DETAIL})",
            bytes.len()
        )));
    }
    Ok((!bytes.is_empty()).then_some(bytes))
}

pub fn password_value(at: &str, pw: String) -> Result<String> {
    if pw.len() > MAX_PASSWORD || pw.contains(['\n', '\r', '\0']) {
        return Err(Error::field(at, format!("password must be one line of at most {MAX_PASSWORD} bytes")));
    }
    Ok(pw)
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Legacy contents that are Base64 are decoded; others kept (A1 sends user
/// data Base64 but metadata as is, depending on the CloudStack build).
pub fn base64_or_raw(s: &str) -> Vec<u8> {
    let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    match B64.decode(t.as_bytes()) {
        Ok(b) if !t.is_empty() => b,
        _ => s.as_bytes().to_vec(),
    }
}

/// As [`base64_or_raw`], for text: only printable UTF-8 counts as decoded
/// (a host name like `node` is valid Base64 of binary garbage).
pub fn base64_text_or_raw(s: &str) -> String {
    match String::from_utf8(base64_or_raw(s)) {
        Ok(t) if t != s && !t.is_empty() && t.chars().all(|c| !c.is_control() || c == '\n') => t,
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cloudstack_vm_data_maps_to_files_userdata_and_password() {
        let doc = json!([
            {"dir": "userdata", "file": "user_data", "content": "#cloud-config\n"},
            {"dir": "metadata", "file": "service-offering", "content": "Small"},
            {"dir": "metadata", "file": "public-ipv4", "content": ""},
            {"dir": "metadata", "file": "instance-id", "content": "6f5d"},
            {"dir": "password", "file": "vm_password", "content": "pw1"},
            {"dir": "password", "file": "vm-password-md5checksum", "content": "abc"}
        ]);
        let u = parse_vm_data("vm_data", &doc, false, 1000).unwrap();
        assert_eq!(u.userdata, Some(Some(b"#cloud-config\n".to_vec())));
        let md = u.metadata.unwrap();
        assert_eq!(md.keys().collect::<Vec<_>>(), ["instance-id", "service-offering"]);
        assert_eq!(u.password.as_deref(), Some("pw1"));
        // Java's String[] form.
        let u = parse_vm_data("v", &json!([["metadata", "vm-id", "7"]]), false, 10).unwrap();
        assert_eq!(u.metadata.unwrap()["vm-id"], "7");
    }

    #[test]
    fn legacy_contents_may_be_base64() {
        let doc = json!([
            {"dir": "userdata", "file": "user_data", "content": B64.encode("hello")},
            {"dir": "metadata", "file": "local-hostname", "content": "node"},
            {"dir": "metadata", "file": "availability-zone", "content": B64.encode("zone-1")}
        ]);
        let u = parse_vm_data("vm_data", &doc, true, 1000).unwrap();
        assert_eq!(u.userdata, Some(Some(b"hello".to_vec())));
        let md = u.metadata.unwrap();
        assert_eq!(md["local-hostname"], "node");
        assert_eq!(md["availability-zone"], "zone-1");
    }

    #[test]
    fn bad_vm_data_is_rejected() {
        assert!(parse_vm_data("v", &json!({"a": 1}), false, 10).is_err());
        assert!(parse_vm_data("v", &json!([{"dir": "metadata", "file": "../x", "content": "1"}]), false, 10).is_err());
        assert!(parse_vm_data("v", &json!([{"dir": "nope", "file": "x", "content": "1"}]), false, 10).is_err());
        let big = "x".repeat(11);
        let e = parse_vm_data("v", &json!([{"dir": "userdata", "file": "user_data", "content": big}]), false, 10)
            .unwrap_err();
        assert!(e.to_string().contains(MAX_USERDATA_DETAIL), "{e}");
    }

    #[test]
    fn names_and_uuids() {
        let o = Owner("cloudstack".into());
        assert_eq!(port_name(&o, 42), "cs-md-42");
        assert_eq!(port_network(&o, "cs-md-42"), Some(42));
        assert_eq!(switch_network(&o, "cs-net-42"), Some(42));
        assert_eq!(port_name(&Owner("b".into()), 42), "cs-b-md-42");
        assert_ne!(row_uuid(&o, "a"), row_uuid(&o, "b"));
        assert_ne!(row_uuid(&o, "42"), port_uuid(&o, 42));
    }
}
