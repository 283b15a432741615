//! Settings and where they come from.
//!
//! Precedence, highest first (fixed; operators and tests rely on it):
//! 1. the physical-network registration details CloudStack forwards with every
//!    command (`registerExtension … details[0].key=ovn.nb.connection …`);
//! 2. environment variables (`OVN_NB_DB` and friends, as `ovn-nbctl` reads them);
//! 3. the TOML file `$CLOUDSTACK_OVN_CONFIG`, else `/etc/cloudstack-ovn/config.toml`;
//! 4. built-in defaults.
//!
//! Every key is documented in `docs/configuration.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::ovsdb::TlsFiles;

pub const DEFAULT_CONFIG_FILE: &str = "/etc/cloudstack-ovn/config.toml";

pub const NB_CONNECTION: &str = "ovn.nb.connection";
pub const NB_PRIVATE_KEY: &str = "ovn.nb.private_key";
pub const NB_CERTIFICATE: &str = "ovn.nb.certificate";
pub const NB_CA_CERT: &str = "ovn.nb.ca_cert";
/// The Southbound database: read only by `cloudstack-ovn doctor` (chassis and
/// bridge mappings); CloudStack commands never use it.
pub const SB_CONNECTION: &str = "ovn.sb.connection";
pub const SB_PRIVATE_KEY: &str = "ovn.sb.private_key";
pub const SB_CERTIFICATE: &str = "ovn.sb.certificate";
pub const SB_CA_CERT: &str = "ovn.sb.ca_cert";
pub const MTU: &str = "ovn.mtu";
pub const DHCP_LEASE_TIME: &str = "ovn.dhcp.lease_time";
pub const OWNER: &str = "ovn.owner";
pub const PUBLIC_NETWORK_NAME: &str = "ovn.public.network_name";
pub const PUBLIC_MTU: &str = "ovn.public.mtu";
pub const SHARED_NETWORK_NAME: &str = "ovn.shared.network_name";
pub const GATEWAY_CHASSIS: &str = "ovn.gateway.chassis";
/// At most this many ports per port-forwarding range (one Load_Balancer VIP each).
pub const MAX_FORWARD_RANGE: u32 = 256;
pub const LOG_FILE: &str = "log.file";
pub const LOG_LEVEL: &str = "log.level";

pub const DEFAULT_MTU: u32 = 1442;
pub const DEFAULT_LEASE_TIME: u32 = 86_400;
pub const DEFAULT_OWNER: &str = "cloudstack";

/// A bridge-mapping key (`ovn-bridge-mappings=<name>:<bridge>`).
fn physical_network_name(key: &str, name: String) -> Result<String> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        Ok(name)
    } else {
        Err(Error::Config(format!("{key}={name:?}: use letters, digits, '-', '_' or '.'")))
    }
}

/// The environment variable for a key. The NB keys use the names `ovn-nbctl`
/// and the OVN tooling already read; the rest are namespaced.
pub fn env_name(key: &str) -> String {
    match key {
        NB_CONNECTION => "OVN_NB_DB".into(),
        NB_PRIVATE_KEY => "OVN_NB_PRIVATE_KEY".into(),
        NB_CERTIFICATE => "OVN_NB_CERTIFICATE".into(),
        NB_CA_CERT => "OVN_NB_CA_CERT".into(),
        SB_CONNECTION => "OVN_SB_DB".into(),
        SB_PRIVATE_KEY => "OVN_SB_PRIVATE_KEY".into(),
        SB_CERTIFICATE => "OVN_SB_CERTIFICATE".into(),
        SB_CA_CERT => "OVN_SB_CA_CERT".into(),
        LOG_FILE => "CLOUDSTACK_OVN_LOG".into(),
        LOG_LEVEL => "CLOUDSTACK_OVN_LOG_LEVEL".into(),
        other => {
            let rest = other.strip_prefix("ovn.").unwrap_or(other);
            format!("CLOUDSTACK_OVN_{}", rest.replace('.', "_").to_ascii_uppercase())
        }
    }
}

/// Environment variables settings are read from.
pub fn is_setting_var(name: &str) -> bool {
    name.starts_with("OVN_NB_") || name.starts_with("OVN_SB_") || name.starts_with("CLOUDSTACK_OVN_")
}

/// The setting variables of the environment ([`is_setting_var`]). Other
/// variables are never looked at, whatever bytes they hold (a locale
/// variable in Latin-1 is common); one of ours that is not UTF-8 is left
/// out and reported as a configuration error naming it (the others, e.g.
/// the log path, still apply).
pub fn env_settings() -> (BTreeMap<String, String>, Option<Error>) {
    let mut out = BTreeMap::new();
    let mut bad = None;
    for (k, v) in std::env::vars_os() {
        let Some(k) = k.to_str().filter(|k| is_setting_var(k)) else { continue };
        match v.into_string() {
            Ok(v) => {
                out.insert(k.to_string(), v);
            }
            Err(_) => {
                bad.get_or_insert_with(|| Error::Config(format!("the environment variable {k} is not valid UTF-8")));
            }
        }
    }
    (out, bad)
}

/// How long reading the config file may take (it is read before argv tells
/// the command's timeout; a FIFO or terminal is refused at once, this only
/// bounds a hung network mount).
const CONFIG_READ_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a value came from, for the log and for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Registration,
    Environment,
    File,
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Registration => "registration details",
            Source::Environment => "environment",
            Source::File => "config file",
            Source::Default => "default",
        })
    }
}

/// The flattened config file: `[ovn.nb] connection = "…"` and
/// `"ovn.nb.connection" = "…"` both become the key `ovn.nb.connection`.
#[derive(Clone, Debug, Default)]
pub struct FileConfig {
    pub path: Option<PathBuf>,
    values: BTreeMap<String, String>,
}

impl FileConfig {
    /// A missing file is an empty config (the default path usually does not
    /// exist on a management server that registers everything per network);
    /// a file that exists but does not parse is an error.
    pub fn load(path: &Path) -> Result<FileConfig> {
        let bytes = match crate::files::read(path, crate::files::MAX_SMALL_FILE, CONFIG_READ_BUDGET) {
            Ok(b) => b,
            Err(crate::files::ReadError::NotFound(_)) => return Ok(FileConfig::default()),
            Err(e) => return Err(Error::Config(e.to_string())),
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::Config(format!("{}: not UTF-8 (byte {})", path.display(), e.utf8_error().valid_up_to()))
        })?;
        // toml's message quotes the offending line, which may hold a
        // password: say where, and what, but not the line.
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
            Error::Config(format!("{}: invalid TOML{at}: {}", path.display(), e.message()))
        })?;
        let mut values = BTreeMap::new();
        flatten("", &toml::Value::Table(table), &mut values)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(FileConfig { path: Some(path.to_path_buf()), values })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) -> Result<(), String> {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out)?;
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        toml::Value::Integer(i) => {
            out.insert(prefix.to_string(), i.to_string());
        }
        toml::Value::Boolean(b) => {
            out.insert(prefix.to_string(), b.to_string());
        }
        toml::Value::Array(items) => {
            // Lists (e.g. several NB remotes) become the comma form used everywhere else.
            let parts: Result<Vec<String>, String> = items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("{prefix}: only lists of strings are supported"))
                })
                .collect();
            out.insert(prefix.to_string(), parts?.join(","));
        }
        // The type only: the value may be a secret.
        other => return Err(format!("{prefix}: unsupported {} value", other.type_str())),
    }
    Ok(())
}

/// Resolved settings for one invocation.
#[derive(Clone, Debug)]
pub struct Settings {
    registration: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    file: FileConfig,
}

impl Settings {
    /// `env` is passed in (not read here) so resolution stays testable.
    pub fn new(registration: BTreeMap<String, String>, env: BTreeMap<String, String>, file: FileConfig) -> Settings {
        Settings { registration, env, file }
    }

    pub fn get(&self, key: &str) -> Option<(String, Source)> {
        let nonempty = |s: &String| !s.trim().is_empty();
        if let Some(v) = self.registration.get(key).filter(|v| nonempty(v)) {
            return Some((v.trim().to_string(), Source::Registration));
        }
        if let Some(v) = self.env.get(&env_name(key)).filter(|v| nonempty(v)) {
            return Some((v.trim().to_string(), Source::Environment));
        }
        self.file.get(key).filter(|v| !v.trim().is_empty()).map(|v| (v.trim().to_string(), Source::File))
    }

    pub fn nb_connection(&self) -> Result<(String, Source)> {
        self.get(NB_CONNECTION).ok_or_else(|| {
            Error::Config(format!(
                "no OVN Northbound connection: set the registration detail {NB_CONNECTION}, \
                 the environment variable OVN_NB_DB, or {NB_CONNECTION} in {}",
                self.file.path.as_deref().unwrap_or(Path::new(DEFAULT_CONFIG_FILE)).display()
            ))
        })
    }

    pub fn tls(&self) -> TlsFiles {
        TlsFiles {
            private_key: self.get(NB_PRIVATE_KEY).map(|(v, _)| PathBuf::from(v)),
            certificate: self.get(NB_CERTIFICATE).map(|(v, _)| PathBuf::from(v)),
            ca_cert: self.get(NB_CA_CERT).map(|(v, _)| PathBuf::from(v)),
        }
    }

    /// The SB remote(s), if configured (`doctor`, the diagnostics, the
    /// UserData acknowledgement read).
    pub fn sb_connection(&self) -> Option<(String, Source)> {
        self.get(SB_CONNECTION)
    }

    /// TLS files for `ssl:` SB remotes: the `ovn.sb.*` keys, each falling
    /// back to its `ovn.nb.*` counterpart (one PKI usually signs both).
    pub fn sb_tls(&self) -> TlsFiles {
        let file = |sb: &str, nb: &str| self.get(sb).or_else(|| self.get(nb)).map(|(v, _)| PathBuf::from(v));
        TlsFiles {
            private_key: file(SB_PRIVATE_KEY, NB_PRIVATE_KEY),
            certificate: file(SB_CERTIFICATE, NB_CERTIFICATE),
            ca_cert: file(SB_CA_CERT, NB_CA_CERT),
        }
    }

    fn number(&self, key: &str, default: u32, range: std::ops::RangeInclusive<u32>) -> Result<u32> {
        match self.get(key) {
            None => Ok(default),
            Some((v, src)) => crate::payload::types::decimal(&v)
                .filter(|n| range.contains(n))
                .ok_or_else(|| Error::Config(format!("{key}={v:?} from {src}: expected a number in {range:?}"))),
        }
    }

    /// Guest MTU advertised by DHCP. 1442 = 1500 minus Geneve over IPv4.
    pub fn mtu(&self) -> Result<u32> {
        self.number(MTU, DEFAULT_MTU, 576..=9000)
    }

    pub fn lease_time(&self) -> Result<u32> {
        self.number(DHCP_LEASE_TIME, DEFAULT_LEASE_TIME, 60..=u32::MAX)
    }

    /// OVN `network_name` of the public network's localnet ports (the
    /// chassis' `ovn-bridge-mappings` key).
    pub fn public_network_name(&self) -> Result<String> {
        let name = self.get(PUBLIC_NETWORK_NAME).map(|(v, _)| v).unwrap_or_else(|| "public".to_string());
        physical_network_name(PUBLIC_NETWORK_NAME, name)
    }

    /// OVN `network_name` of shared and L2 guest networks' localnet ports;
    /// by default the public one (guest and public VLANs usually share the
    /// hosts' physical NIC, so one bridge mapping serves both).
    pub fn shared_network_name(&self) -> Result<String> {
        match self.get(SHARED_NETWORK_NAME) {
            Some((name, _)) => physical_network_name(SHARED_NETWORK_NAME, name),
            None => self.public_network_name(),
        }
    }

    pub fn public_mtu(&self) -> Result<u32> {
        self.number(PUBLIC_MTU, 1500, 576..=9216)
    }

    /// Ordered gateway chassis names (highest priority first), at most 5
    /// (OVN's limit for HA gateway scheduling).
    pub fn gateway_chassis(&self) -> Result<Vec<String>> {
        let Some((raw, src)) = self.get(GATEWAY_CHASSIS) else {
            return Ok(Vec::new());
        };
        let names: Vec<String> = raw.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        if names.len() > 5 {
            return Err(Error::Config(format!(
                "{GATEWAY_CHASSIS} from {src} names {} chassis; at most 5",
                names.len()
            )));
        }
        if let Some(bad) = names.iter().find(|n| !n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))) {
            return Err(Error::Config(format!("{GATEWAY_CHASSIS} from {src}: {bad:?} is not a chassis name")));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(Error::Config(format!("{GATEWAY_CHASSIS} from {src} names {dup} twice")));
        }
        Ok(names)
    }

    /// The value of our ownership tag. Two CloudStack installations sharing
    /// one NB must use different owners.
    pub fn owner(&self) -> Result<String> {
        let owner = self.get(OWNER).map(|(v, _)| v).unwrap_or_else(|| DEFAULT_OWNER.to_string());
        if owner.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && owner.len() <= 64 {
            Ok(owner)
        } else {
            Err(Error::Config(format!("{OWNER}={owner:?}: use letters, digits, '-', '_' or '.' (at most 64)")))
        }
    }
}

/// The local configuration every entry point reads the same way: the
/// setting variables of the environment ([`env_settings`]) and the config
/// file (`$CLOUDSTACK_OVN_CONFIG` or [`DEFAULT_CONFIG_FILE`]), with their
/// errors kept for the caller to report. Used by the CloudStack path,
/// `doctor` and `audit`.
#[derive(Debug)]
pub struct Local {
    pub env: BTreeMap<String, String>,
    /// A setting variable that is not UTF-8 (the others still apply).
    pub env_error: Option<Error>,
    pub path: PathBuf,
    pub file: FileConfig,
    pub file_error: Option<Error>,
}

impl Local {
    pub fn load() -> Local {
        let (env, env_error) = env_settings();
        let path = PathBuf::from(
            env.get("CLOUDSTACK_OVN_CONFIG")
                .filter(|s| !s.is_empty())
                .cloned()
                .unwrap_or_else(|| DEFAULT_CONFIG_FILE.to_string()),
        );
        let (file, file_error) = match FileConfig::load(&path) {
            Ok(f) => (f, None),
            Err(e) => (FileConfig::default(), Some(e)),
        };
        Local { env, env_error, path, file, file_error }
    }

    /// Open the log file named by the environment or the config file, at
    /// their log level (the CloudStack path and the agent alike).
    pub fn init_log(&self) {
        let level = self
            .env
            .get(&env_name(LOG_LEVEL))
            .map(String::as_str)
            .or_else(|| self.file.get(LOG_LEVEL))
            .and_then(crate::log::Level::parse)
            .unwrap_or(crate::log::Level::Info);
        let path = crate::log::resolve_path(self.env.get("CLOUDSTACK_OVN_LOG").cloned(), self.file.get(LOG_FILE));
        crate::log::init(&path, level);
    }

    /// Settings with `registration` (CloudStack's registration details, or
    /// an operator's overrides) on top.
    pub fn settings(&self, registration: BTreeMap<String, String>) -> Settings {
        Settings::new(registration, self.env.clone(), self.file.clone())
    }
}

/// Every setting a CloudStack command uses, resolved and validated once,
/// before the command is prepared: a bad value is a configuration error
/// (exit 3) whatever the command.
#[derive(Clone, Debug)]
pub struct Config {
    pub owner: String,
    /// The NB remote(s), or what to tell when none is configured (only
    /// commands that connect need one).
    nb: std::result::Result<(String, Source), String>,
    pub tls: TlsFiles,
    pub mtu: u32,
    pub lease_time: u32,
    pub public_network_name: String,
    /// `network_name` of shared and L2 networks' localnet ports.
    pub shared_network_name: String,
    pub public_mtu: u32,
    /// Ordered gateway chassis; empty when not configured (only commands
    /// that create a gateway need one).
    pub gateway_chassis: Vec<String>,
    /// The SB remote(s) (`ovn.sb.connection`): read by the custom-action
    /// diagnostics and by UserData commands (was a stored password
    /// acknowledged?); nothing is written there.
    pub sb: Option<String>,
    pub sb_tls: TlsFiles,
    /// UserData (docs/metadata.md): the zone's public key and digest key
    /// (checked by the UserData commands, which need them), and the user
    /// data size cap.
    pub metadata_public_key: Option<String>,
    pub metadata_digest_key: Option<String>,
    pub metadata_userdata_max: usize,
}

impl Config {
    pub fn parse(s: &Settings) -> Result<Config> {
        let nb = match s.nb_connection() {
            Ok(nb) => Ok(nb),
            Err(Error::Config(msg)) => Err(msg),
            Err(e) => return Err(e),
        };
        Ok(Config {
            owner: s.owner()?,
            nb,
            tls: s.tls(),
            mtu: s.mtu()?,
            lease_time: s.lease_time()?,
            public_network_name: s.public_network_name()?,
            shared_network_name: s.shared_network_name()?,
            public_mtu: s.public_mtu()?,
            gateway_chassis: s.gateway_chassis()?,
            sb: s.sb_connection().map(|(remote, _)| remote),
            sb_tls: s.sb_tls(),
            metadata_public_key: s.get(crate::metadata::PUBLIC_KEY_DETAIL).map(|(v, _)| v),
            metadata_digest_key: s.get(crate::metadata::DIGEST_KEY_DETAIL).map(|(v, _)| v),
            metadata_userdata_max: match s.get(crate::metadata::MAX_USERDATA_DETAIL) {
                None => crate::metadata::DEFAULT_MAX_USERDATA,
                Some((v, source)) => v.parse().map_err(|_| {
                    Error::Config(format!(
                        "{} ({source}) must be a number of bytes, got {v:?}",
                        crate::metadata::MAX_USERDATA_DETAIL
                    ))
                })?,
            },
        })
    }

    pub fn nb_connection(&self) -> Result<(String, Source)> {
        self.nb.clone().map_err(Error::Config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn file(text: &str) -> FileConfig {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        FileConfig::load(&p).unwrap()
    }

    #[test]
    fn precedence_registration_env_file() {
        let f = file("[ovn.nb]\nconnection = \"unix:/file\"\n[ovn]\nmtu = 1400\n");
        let s = Settings::new(map(&[]), map(&[]), f.clone());
        assert_eq!(s.nb_connection().unwrap(), ("unix:/file".into(), Source::File));
        assert_eq!(s.mtu().unwrap(), 1400);
        let s = Settings::new(map(&[]), map(&[("OVN_NB_DB", "unix:/env")]), f.clone());
        assert_eq!(s.nb_connection().unwrap(), ("unix:/env".into(), Source::Environment));
        let s = Settings::new(map(&[("ovn.nb.connection", "tcp:1.2.3.4:6641")]), map(&[("OVN_NB_DB", "unix:/env")]), f);
        assert_eq!(s.nb_connection().unwrap(), ("tcp:1.2.3.4:6641".into(), Source::Registration));
    }

    #[test]
    fn dotted_keys_and_lists_flatten() {
        let f = file("\"ovn.nb.connection\" = [\"tcp:a:1\", \"tcp:b:2\"]\n");
        assert_eq!(f.get("ovn.nb.connection"), Some("tcp:a:1,tcp:b:2"));
    }

    #[test]
    fn missing_file_is_empty_and_bad_file_is_error() {
        assert!(FileConfig::load(Path::new("/nonexistent/x.toml")).unwrap().get("x").is_none());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "this is = = not toml").unwrap();
        let e = FileConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");
    }

    #[test]
    fn a_bad_file_is_named_by_line_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[ovn]\nmtu = 1400\npassword = \"hunter2\n").unwrap();
        let e = FileConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("line 3") && !e.contains("hunter2"), "{e}");
        std::fs::write(&p, "when = 1979-05-27T07:32:00Z\n").unwrap();
        let e = FileConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("when: unsupported datetime value") && !e.contains("1979"), "{e}");
    }

    #[test]
    fn no_connection_names_all_three_places() {
        let s = Settings::new(map(&[]), map(&[]), FileConfig::default());
        let e = s.nb_connection().unwrap_err().to_string();
        assert!(e.contains("ovn.nb.connection") && e.contains("OVN_NB_DB"), "{e}");
    }

    #[test]
    fn sb_keys_fall_back_to_nb_tls() {
        let s = Settings::new(
            map(&[]),
            map(&[("OVN_SB_DB", "ssl:1.2.3.4:6642"), ("OVN_NB_CA_CERT", "/ca.pem"), ("OVN_SB_PRIVATE_KEY", "/sb.pem")]),
            FileConfig::default(),
        );
        assert_eq!(s.sb_connection(), Some(("ssl:1.2.3.4:6642".into(), Source::Environment)));
        let t = s.sb_tls();
        assert_eq!(t.ca_cert.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(t.private_key.as_deref(), Some(Path::new("/sb.pem")));
        assert_eq!(t.certificate, None);
        assert_eq!(Settings::new(map(&[]), map(&[]), FileConfig::default()).sb_connection(), None);
    }

    #[test]
    fn bad_numbers_are_config_errors() {
        for bad in ["jumbo", "+1442", "-1"] {
            let s = Settings::new(map(&[("ovn.mtu", bad)]), map(&[]), FileConfig::default());
            assert!(s.mtu().unwrap_err().to_string().contains("ovn.mtu"), "{bad}");
        }
        let s = Settings::new(map(&[]), map(&[("CLOUDSTACK_OVN_MTU", "1300")]), FileConfig::default());
        assert_eq!(s.mtu().unwrap(), 1300);
    }

    #[test]
    fn config_is_parsed_whole_and_a_missing_nb_waits_for_a_connection() {
        let s = Settings::new(map(&[("ovn.gateway.chassis", "hv1, hv2")]), map(&[]), FileConfig::default());
        let c = Config::parse(&s).unwrap();
        assert_eq!(c.gateway_chassis, ["hv1", "hv2"]);
        assert_eq!((c.mtu, c.public_network_name.as_str()), (DEFAULT_MTU, "public"));
        assert!(matches!(c.nb_connection(), Err(Error::Config(m)) if m.contains("OVN_NB_DB")));
        // Any bad value fails the whole configuration, whatever the command.
        let bad = Settings::new(map(&[("ovn.mtu", "9")]), map(&[]), FileConfig::default());
        assert!(matches!(Config::parse(&bad), Err(Error::Config(_))));
    }
}
