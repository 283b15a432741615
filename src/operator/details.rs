//! `cloudstack-ovn extension-details`: what `cmk createExtension` and
//! `cmk registerExtension` need, from [`crate::capabilities`] (so it always
//! matches what this version dispatches) and the local settings.

use serde_json::{json, Map, Value};

use super::args::DetailsArgs;
use crate::capabilities;
use crate::config::{self, Settings};
use crate::output;

/// Where CloudStack looks for extensions (`<root>/<name>/<name>.sh`).
pub const EXTENSIONS_ROOT: &str = "/usr/share/cloudstack-management/extensions";

/// The registration keys an operator sets, with an example for each one
/// the local settings do not have.
const REGISTRATION: &[(&str, &str)] = &[
    (config::NB_CONNECTION, "ssl:NB1_IP:6641,ssl:NB2_IP:6641,ssl:NB3_IP:6641"),
    (config::NB_PRIVATE_KEY, "/etc/cloudstack-ovn/pki/client-privkey.pem"),
    (config::NB_CERTIFICATE, "/etc/cloudstack-ovn/pki/client-cert.pem"),
    (config::NB_CA_CERT, "/etc/cloudstack-ovn/pki/cacert.pem"),
    (config::GATEWAY_CHASSIS, "GATEWAY1_SYSTEM_ID,GATEWAY2_SYSTEM_ID"),
    (config::PUBLIC_NETWORK_NAME, "public"),
    (config::SHARED_NETWORK_NAME, "public"),
    // UserData (docs/metadata.md): printed by `cloudstack-ovn metadata-keygen`.
    (crate::metadata::PUBLIC_KEY_DETAIL, "PUBLIC_KEY_FROM_METADATA_KEYGEN"),
    (crate::metadata::DIGEST_KEY_DETAIL, "DIGEST_KEY_FROM_METADATA_KEYGEN"),
];

/// Registration keys only a service we advertise needs.
fn needed(key: &str) -> bool {
    let userdata = key == crate::metadata::PUBLIC_KEY_DETAIL || key == crate::metadata::DIGEST_KEY_DETAIL;
    !userdata || capabilities::advertised().any(|s| s.name == "UserData")
}

/// One registration detail and whether its value is the local setting.
struct Detail {
    key: &'static str,
    value: String,
    local: bool,
}

fn registration(settings: &Settings) -> Vec<Detail> {
    let local_nb = settings.get(config::NB_CONNECTION).map(|(v, _)| v);
    // TLS files only matter for ssl: remotes.
    let tls = local_nb.as_deref().is_none_or(|r| r.split(',').any(|x| x.trim().starts_with("ssl:")));
    REGISTRATION
        .iter()
        .filter(|(k, _)| tls || !k.starts_with("ovn.nb.") || *k == config::NB_CONNECTION)
        .filter(|(k, _)| needed(k))
        .map(|(key, example)| match settings.get(key) {
            Some((v, _)) => Detail { key, value: v, local: true },
            None => Detail { key, value: example.to_string(), local: false },
        })
        .collect()
}

/// POSIX shell single-quoting (only when needed).
fn sh(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:,=@%+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn details_args(list: &[(&str, String)]) -> Vec<String> {
    list.iter()
        .enumerate()
        .flat_map(|(i, (k, v))| [sh(&format!("details[{i}].key={k}")), sh(&format!("details[{i}].value={v}"))])
        .collect()
}

/// `cmd a b c` as continued lines, two arguments per line after the first ones.
fn command_lines(head: &str, args: &[String]) -> String {
    let mut s = head.to_string();
    for pair in args.chunks(2) {
        s.push_str(" \\\n  ");
        s.push_str(&pair.join(" "));
    }
    s
}

/// `cmk addCustomAction` for every custom action (when CustomAction is
/// advertised), registered on networks; the same names work on VPCs
/// (`resourcetype=Vpc`).
fn custom_action_lines(resourcetype: &str) -> Vec<String> {
    if !capabilities::implemented("custom-action") {
        return Vec::new();
    }
    crate::commands::CUSTOM_ACTIONS
        .iter()
        .map(|a| {
            let mut args = vec![
                format!("name={}", sh(a.name)),
                sh(&format!("description={}", a.about)),
                format!("resourcetype={resourcetype}"),
                "enabled=true".to_string(),
            ];
            for (i, p) in a.params.iter().enumerate() {
                args.push(sh(&format!("parameters[{i}].name={}", p.name)));
                args.push(sh(&format!("parameters[{i}].type=STRING")));
                args.push(sh(&format!("parameters[{i}].required={}", p.required)));
            }
            command_lines("cmk addCustomAction extensionid=\"$EXTENSION_ID\"", &args)
        })
        .collect()
}

fn custom_actions_json() -> Value {
    let list = crate::commands::CUSTOM_ACTIONS.iter().map(|a| {
        let params: Vec<Value> =
            a.params.iter().map(|p| json!({"name": p.name, "type": "STRING", "required": p.required})).collect();
        json!({"name": a.name, "description": a.about, "parameters": params})
    });
    match capabilities::implemented("custom-action") {
        true => Value::Array(list.collect()),
        false => Value::Array(Vec::new()),
    }
}

pub fn run(a: &DetailsArgs) -> u8 {
    let (settings, _) = super::doctor::local_settings(Default::default());
    let name = a.name.as_str();
    let path = format!("{name}/{name}.sh");
    let entry_point = format!("{EXTENSIONS_ROOT}/{path}");
    let details = capabilities::extension_details();
    let reg = registration(&settings);
    if a.json {
        let d: Map<String, Value> = details.iter().map(|(k, v)| (k.to_string(), Value::String(v.clone()))).collect();
        let r: Map<String, Value> = reg.iter().map(|d| (d.key.to_string(), Value::String(d.value.clone()))).collect();
        output::print_json(&json!({
            "name": name,
            "type": "NetworkOrchestrator",
            "path": path,
            "entry_point": entry_point,
            "services": capabilities::advertised().map(|s| s.name).collect::<Vec<_>>(),
            "capabilities": capabilities::capabilities_json(),
            "details": d,
            "registration": r,
            "custom_actions": custom_actions_json(),
        }));
        return 0;
    }
    let version = env!("CARGO_PKG_VERSION");
    let create = command_lines(
        &format!("cmk createExtension name={} type=NetworkOrchestrator path={}", sh(name), sh(&path)),
        &details_args(&details),
    );
    let reg_pairs: Vec<(&str, String)> = reg.iter().map(|d| (d.key, d.value.clone())).collect();
    let register = command_lines(
        "cmk registerExtension id=\"$EXTENSION_ID\" resourcetype=PhysicalNetwork resourceid=\"$PHYSICAL_NETWORK_ID\"",
        &details_args(&reg_pairs),
    );
    let examples: Vec<&str> = reg.iter().filter(|d| !d.local).map(|d| d.key).collect();
    let edit = match examples.is_empty() {
        true => "#    Values are this machine's settings (environment / config file).".to_string(),
        false => format!("#    Replace the example values of: {}.", examples.join(", ")),
    };
    output::print_text(&format!(
        "\
# cloudstack-ovn {version}: register the OVN network extension {name:?} with CloudStack.
# Services provided by this version: {services}
#
# 1. Entry point on every management server (the package installs it for the name \"ovn\";
#    for another name copy it to {EXTENSIONS_ROOT}/<name>/<name>.sh), owned by cloud:cloud:
#      {entry_point}
#
# 2. Create the extension:
{create}

# 3. Register it on the physical network of the guest traffic (EXTENSION_ID from
#    `cmk listExtensions name={name}`, PHYSICAL_NETWORK_ID from `cmk listPhysicalNetworks`).
{edit}
#    Other keys (ovn.mtu, ovn.owner, ...): docs/configuration.md.
{register}

# 4. Enable the network service provider named after the extension (PROVIDER_ID from
#    `cmk listNetworkServiceProviders name={name} physicalnetworkid=$PHYSICAL_NETWORK_ID`):
cmk updateNetworkServiceProvider id=\"$PROVIDER_ID\" state=Enabled

# 5. Offerings naming {name:?} as provider of these services, then check with `cloudstack-ovn doctor`.{custom}",
        services = capabilities::services_csv(),
        custom = match custom_action_lines("Network") {
            lines if lines.is_empty() => String::new(),
            lines => format!(
                "\n\n# 6. Custom actions (runNetworkCustomAction); for VPCs register them with resourcetype=Vpc:\n{}",
                lines.join("\n")
            ),
        },
    ));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(sh("details[0].key=x"), "'details[0].key=x'");
        assert_eq!(sh("ovn/ovn.sh"), "ovn/ovn.sh");
        assert_eq!(sh(r#"{"a":"b c"}"#), r#"'{"a":"b c"}'"#);
        assert_eq!(sh("it's"), r"'it'\''s'");
    }

    #[test]
    fn tls_keys_only_for_ssl() {
        let env = |v: &str| [("OVN_NB_DB".to_string(), v.to_string())].into_iter().collect();
        let s = Settings::new(Default::default(), env("unix:/run/ovn/ovnnb_db.sock"), Default::default());
        let keys: Vec<&str> = registration(&s).iter().map(|d| d.key).collect();
        assert!(!keys.contains(&config::NB_CA_CERT) && keys.contains(&config::NB_CONNECTION), "{keys:?}");
        let s = Settings::new(Default::default(), env("ssl:10.0.0.1:6641"), Default::default());
        let reg = registration(&s);
        assert!(reg.iter().any(|d| d.key == config::NB_CA_CERT && !d.local));
        assert!(reg.iter().any(|d| d.key == config::NB_CONNECTION && d.local && d.value == "ssl:10.0.0.1:6641"));
    }
}
