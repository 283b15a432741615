//! CloudStack's input, in both generations, reduced to one [`Payload`]: a flat
//! map of snake_case fields plus the two details blobs.
//!
//! * Upstream (Gen B/C): a JSON file `{"physical-network-extension-details":{…},
//!   "network-extension-details":{…},"payload":{…}}`; `custom-action` is flat.
//! * Legacy (Gen A): `--network-id 42 --nic-uuid …`; kebab-case flags map to
//!   the same snake_case keys; `--fw-rules-file` style flags name a file that
//!   holds Base64 of JSON.
//!
//! Nested values may arrive as JSON, as a JSON string, or as Base64 of JSON
//! (README-b64 builds); [`decode_nested`] accepts all three. Unknown fields
//! are kept and ignored: newer CloudStack versions add fields.

pub mod pbr;
pub mod rules;
pub mod types;

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub const PHYSICAL_DETAILS: &str = "physical-network-extension-details";
pub const NETWORK_DETAILS: &str = "network-extension-details";

/// Fields whose values are JSON documents rather than scalars.
pub const NESTED_FIELDS: &[&str] =
    &["fw_rules", "acl_rules", "lb_rules", "vm_data", "restore_data", "action_params", "options"];

#[derive(Clone, Debug, Default)]
pub struct Payload {
    pub fields: Map<String, Value>,
    /// Registration details of the physical network (strings; may hold secrets).
    pub physical_details: BTreeMap<String, String>,
    /// What our `ensure-network-device` printed last time, parsed by CloudStack.
    pub network_details: Map<String, Value>,
}

impl Payload {
    /// Parse the upstream payload-file envelope.
    pub fn from_envelope(doc: Value) -> Result<Payload> {
        let Value::Object(mut top) = doc else {
            return Err(Error::Payload("the payload file must hold a JSON object".into()));
        };
        let physical = top.remove(PHYSICAL_DETAILS);
        let network = top.remove(NETWORK_DETAILS);
        let fields = match top.remove("payload") {
            Some(Value::Object(p)) => p,
            Some(other @ Value::String(_)) => match decode_nested("payload", &other)? {
                Value::Object(p) => p,
                _ => return Err(Error::Payload("\"payload\" must be a JSON object".into())),
            },
            Some(_) => return Err(Error::Payload("\"payload\" must be a JSON object".into())),
            // custom-action payloads are flat: the fields are the top level.
            None => top,
        };
        let mut payload = Payload { fields, ..Payload::default() };
        if let Some(v) = physical {
            payload.physical_details = details_strings(PHYSICAL_DETAILS, &v)?;
        }
        if let Some(v) = network {
            payload.network_details = details_object(NETWORK_DETAILS, &v)?;
        }
        Ok(payload)
    }

    /// A scalar field as a string (numbers and booleans are accepted too:
    /// Gson stringifies most values, but not all CloudStack builds do).
    pub fn str(&self, key: &str) -> Option<String> {
        match self.fields.get(key)? {
            Value::String(s) => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A non-empty scalar field.
    pub fn nonempty(&self, key: &str) -> Option<String> {
        self.str(key).filter(|s| !s.is_empty())
    }

    pub fn require(&self, key: &str) -> Result<String> {
        self.nonempty(key).ok_or_else(|| Error::Missing(key.to_string()))
    }

    /// `"true"`/`"false"` (any case) or a JSON boolean.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.nonempty(key) {
            None => Ok(None),
            Some(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Some(true)),
                "false" | "0" | "no" => Ok(Some(false)),
                _ => Err(Error::field(key, format!("expected true or false, got {s:?}"))),
            },
        }
    }

    /// A nested JSON field, decoded from whichever form it arrived in.
    pub fn nested(&self, key: &str) -> Result<Option<Value>> {
        match self.fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => decode_nested(key, v).map(Some),
        }
    }
}

/// JSON as is; a string holding JSON; or a string holding Base64 of JSON.
pub fn decode_nested(key: &str, value: &Value) -> Result<Value> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            if let Ok(v) = serde_json::from_str::<Value>(s) {
                if v.is_object() || v.is_array() {
                    return Ok(v);
                }
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|_| Error::field(key, "neither JSON nor Base64 of JSON"))?;
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .filter(|v| v.is_object() || v.is_array())
                .ok_or_else(|| Error::field(key, "Base64 content is not a JSON object or array"))
        }
        other => Ok(other.clone()),
    }
}

fn details_object(key: &str, v: &Value) -> Result<Map<String, Value>> {
    match v {
        Value::Null => Ok(Map::new()),
        Value::String(s) if s.trim().is_empty() => Ok(Map::new()),
        _ => match decode_nested(key, v)? {
            Value::Object(m) => Ok(m),
            _ => Err(Error::field(key, "must be a JSON object")),
        },
    }
}

/// Registration details are strings; tolerate numbers and booleans.
fn details_strings(key: &str, v: &Value) -> Result<BTreeMap<String, String>> {
    Ok(details_object(key, v)?
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect())
}

/// Parse a details blob given on the legacy command line.
pub fn details_from_flag(key: &str, raw: &str) -> Result<Value> {
    if raw.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    decode_nested(key, &Value::String(raw.to_string()))
}

/// Attach the legacy details blobs to a payload built from flags.
pub fn set_details(payload: &mut Payload, physical: Option<&Value>, network: Option<&Value>) -> Result<()> {
    if let Some(v) = physical {
        payload.physical_details = details_strings(PHYSICAL_DETAILS, v)?;
    }
    if let Some(v) = network {
        payload.network_details = details_object(NETWORK_DETAILS, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_and_flat_custom_action() {
        let p = Payload::from_envelope(json!({
            "physical-network-extension-details": {"ovn.nb.connection": "unix:/x", "port": 22},
            "network-extension-details": {"ls": "cs-net-42"},
            "payload": {"network_id": "42", "default_nic": "true", "new_field": {"a": 1}}
        }))
        .unwrap();
        assert_eq!(p.str("network_id").as_deref(), Some("42"));
        assert_eq!(p.bool("default_nic").unwrap(), Some(true));
        assert_eq!(p.physical_details["port"], "22");
        assert_eq!(p.network_details["ls"], "cs-net-42");

        let flat = Payload::from_envelope(json!({"network_id": "7", "action": "x",
            "physical-network-extension-details": {}}))
        .unwrap();
        assert_eq!(flat.str("action").as_deref(), Some("x"));
    }

    #[test]
    fn nested_values_in_three_forms() {
        let obj = json!({"rules": []});
        let as_string = Value::String(obj.to_string());
        let as_b64 = Value::String(base64::engine::general_purpose::STANDARD.encode(obj.to_string()));
        for v in [obj.clone(), as_string, as_b64] {
            assert_eq!(decode_nested("fw_rules", &v).unwrap(), obj);
        }
        assert!(decode_nested("fw_rules", &json!("%%%")).is_err());
    }

    #[test]
    fn details_may_arrive_as_strings_or_base64() {
        let inner = json!({"ovn.nb.connection": "tcp:1.2.3.4:6641"});
        let b64 = base64::engine::general_purpose::STANDARD.encode(inner.to_string());
        let p = Payload::from_envelope(json!({"physical-network-extension-details": b64, "payload": {}})).unwrap();
        assert_eq!(p.physical_details["ovn.nb.connection"], "tcp:1.2.3.4:6641");
    }

    #[test]
    fn bad_documents_are_rejected() {
        assert!(Payload::from_envelope(json!([1])).is_err());
        assert!(Payload::from_envelope(json!({"payload": 5})).is_err());
        let p = Payload::from_envelope(json!({"payload": {"default_nic": "maybe"}})).unwrap();
        assert!(p.bool("default_nic").is_err());
    }
}
