//! Typed views of the NB rows we read. Only the columns we use are selected,
//! so columns added by newer schemas never appear in replies.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::{key, table, Owner};
use crate::ovsdb::value::{as_uuid, optional_uuid, string_map, string_map_of, string_set_of, uuid_set_of};
use crate::ovsdb::{Condition, Function, Operation};

fn uuid_col(row: &Map<String, Value>) -> Option<Uuid> {
    row.get("_uuid").and_then(as_uuid)
}

fn map_col(row: &Map<String, Value>, col: &str) -> BTreeMap<String, String> {
    row.get(col).map(string_map_of).unwrap_or_default()
}

fn set_col(row: &Map<String, Value>, col: &str) -> Vec<String> {
    row.get(col).map(string_set_of).unwrap_or_default()
}

fn str_col(row: &Map<String, Value>, col: &str) -> String {
    row.get(col).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// `external_ids includes {owner, key: value}`: rows of ours carrying that
/// id. A server-side scan of the table (no index on external_ids); only the
/// matching rows are transferred.
fn tagged(owner: &Owner, key: &str, value: String) -> Condition {
    let ids: BTreeMap<String, String> = [(key::OWNER.to_string(), owner.0.clone()), (key.to_string(), value)].into();
    Condition("external_ids".into(), Function::Includes, string_map(&ids))
}

fn select(table: &str, cond: Condition, columns: &[&str]) -> Operation {
    Operation::Select {
        table: table.to_string(),
        conditions: vec![cond],
        columns: Some(columns.iter().map(|c| c.to_string()).collect()),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Switch {
    pub uuid: Uuid,
    pub name: String,
    pub ports: Vec<Uuid>,
    pub dns_records: Vec<Uuid>,
    pub load_balancer: Vec<Uuid>,
    pub external_ids: BTreeMap<String, String>,
}

impl Switch {
    pub const COLUMNS: &'static [&'static str] =
        &["_uuid", "name", "ports", "dns_records", "load_balancer", "external_ids"];

    pub fn select(uuid: Uuid) -> Operation {
        select(table::LOGICAL_SWITCH, Condition::uuid_is(uuid), Self::COLUMNS)
    }

    /// Without the `ports` column: a NIC command must not download the list
    /// of every port of the network. Membership is asked for with
    /// [`Switch::select_containing`] instead.
    pub fn select_light(uuid: Uuid) -> Operation {
        let cols: Vec<&str> = Self::COLUMNS.iter().copied().filter(|c| *c != "ports").collect();
        select(table::LOGICAL_SWITCH, Condition::uuid_is(uuid), &cols)
    }

    /// One row (just its uuid) iff the switch exists and holds `port`.
    pub fn select_containing(uuid: Uuid, port: Uuid) -> Operation {
        Operation::Select {
            table: table::LOGICAL_SWITCH.into(),
            conditions: vec![
                Condition::uuid_is(uuid),
                Condition("ports".into(), Function::Includes, crate::ovsdb::value::uuid(port)),
            ],
            columns: Some(vec!["_uuid".into()]),
        }
    }

    /// The switch holding this port (a scan: `ports` has no index).
    pub fn select_holding(port: Uuid) -> Operation {
        select(
            table::LOGICAL_SWITCH,
            Condition("ports".into(), Function::Includes, crate::ovsdb::value::uuid(port)),
            Self::COLUMNS,
        )
    }

    /// By name: a scan, Logical_Switch has no name index. Only who holds
    /// the name is wanted, never the (possibly long) `ports` list.
    pub fn select_by_name(name: &str) -> Operation {
        select(table::LOGICAL_SWITCH, Condition::eq("name", name), &["_uuid", "name", "external_ids"])
    }

    pub fn from_row(row: &Map<String, Value>) -> Option<Switch> {
        Some(Switch {
            uuid: uuid_col(row)?,
            name: str_col(row, "name"),
            ports: row.get("ports").map(uuid_set_of).unwrap_or_default(),
            dns_records: row.get("dns_records").map(uuid_set_of).unwrap_or_default(),
            load_balancer: row.get("load_balancer").map(uuid_set_of).unwrap_or_default(),
            external_ids: map_col(row, "external_ids"),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    pub uuid: Uuid,
    pub name: String,
    /// Read only by [`Port::select_localnet`].
    pub tag_request: Option<i64>,
    pub addresses: Vec<String>,
    pub port_security: Vec<String>,
    pub dhcpv4_options: Option<Uuid>,
    pub options: BTreeMap<String, String>,
    pub external_ids: BTreeMap<String, String>,
}

impl Port {
    pub const COLUMNS: &'static [&'static str] =
        &["_uuid", "name", "addresses", "port_security", "dhcpv4_options", "options", "external_ids"];

    /// By name: finds a port someone else created with our NIC's name. The
    /// unique index on `name` only enforces uniqueness: ovsdb-server answers
    /// this select by scanning the table (29 ms at 100k ports), so it is
    /// used only after an insert collided on the name.
    pub fn select_by_name(name: &str) -> Operation {
        select(table::LOGICAL_SWITCH_PORT, Condition::eq("name", name), Self::COLUMNS)
    }

    pub fn select(uuid: Uuid) -> Operation {
        select(table::LOGICAL_SWITCH_PORT, Condition::uuid_is(uuid), Self::COLUMNS)
    }

    /// A localnet port, with the VLAN it asks for (`tag_request`), which
    /// only localnet ports carry.
    pub fn select_localnet(uuid: Uuid) -> Operation {
        let mut columns = Self::COLUMNS.to_vec();
        columns.push("tag_request");
        select(table::LOGICAL_SWITCH_PORT, Condition::uuid_is(uuid), &columns)
    }

    /// Our port of the NIC with this CloudStack id (a scan).
    pub fn select_by_nic_id(owner: &Owner, nic_id: u64) -> Operation {
        select(table::LOGICAL_SWITCH_PORT, tagged(owner, key::NIC_ID, nic_id.to_string()), Self::COLUMNS)
    }

    pub fn from_row(row: &Map<String, Value>) -> Option<Port> {
        Some(Port {
            uuid: uuid_col(row)?,
            name: str_col(row, "name"),
            tag_request: row
                .get("tag_request")
                .and_then(|v| crate::ovsdb::value::set_items(v).first().and_then(|x| x.as_i64())),
            addresses: set_col(row, "addresses"),
            port_security: set_col(row, "port_security"),
            dhcpv4_options: row.get("dhcpv4_options").and_then(optional_uuid),
            options: map_col(row, "options"),
            external_ids: map_col(row, "external_ids"),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct DhcpOptions {
    pub uuid: Uuid,
    pub cidr: String,
    pub options: BTreeMap<String, String>,
    pub external_ids: BTreeMap<String, String>,
}

impl DhcpOptions {
    pub const COLUMNS: &'static [&'static str] = &["_uuid", "cidr", "options", "external_ids"];

    pub fn select(uuid: Uuid) -> Operation {
        select(table::DHCP_OPTIONS, Condition::uuid_is(uuid), Self::COLUMNS)
    }

    /// Every DHCP row of ours for the network (a scan of a small table).
    pub fn select_by_network(owner: &Owner, network_id: u64) -> Operation {
        select(table::DHCP_OPTIONS, tagged(owner, key::NETWORK_ID, network_id.to_string()), Self::COLUMNS)
    }

    pub fn from_row(row: &Map<String, Value>) -> Option<DhcpOptions> {
        Some(DhcpOptions {
            uuid: uuid_col(row)?,
            cidr: str_col(row, "cidr"),
            options: map_col(row, "options"),
            external_ids: map_col(row, "external_ids"),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dns {
    pub uuid: Uuid,
    pub records: BTreeMap<String, String>,
    pub external_ids: BTreeMap<String, String>,
}

impl Dns {
    pub const COLUMNS: &'static [&'static str] = &["_uuid", "records", "external_ids"];

    pub fn select(uuid: Uuid) -> Operation {
        select(table::DNS, Condition::uuid_is(uuid), Self::COLUMNS)
    }

    pub fn from_row(row: &Map<String, Value>) -> Option<Dns> {
        Some(Dns { uuid: uuid_col(row)?, records: map_col(row, "records"), external_ids: map_col(row, "external_ids") })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Router {
    pub uuid: Uuid,
    pub name: String,
    pub ports: Vec<Uuid>,
    pub nat: Vec<Uuid>,
    pub static_routes: Vec<Uuid>,
    pub load_balancer: Vec<Uuid>,
    pub policies: Vec<Uuid>,
    pub options: BTreeMap<String, String>,
    pub external_ids: BTreeMap<String, String>,
}

impl Router {
    pub const COLUMNS: &'static [&'static str] =
        &["_uuid", "name", "ports", "nat", "static_routes", "load_balancer", "policies", "options", "external_ids"];

    pub fn select(uuid: Uuid) -> Operation {
        select(table::LOGICAL_ROUTER, Condition::uuid_is(uuid), Self::COLUMNS)
    }

    pub fn from_row(row: &Map<String, Value>) -> Option<Router> {
        let uuids = |c: &str| row.get(c).map(uuid_set_of).unwrap_or_default();
        Some(Router {
            uuid: uuid_col(row)?,
            name: str_col(row, "name"),
            ports: uuids("ports"),
            nat: uuids("nat"),
            static_routes: uuids("static_routes"),
            load_balancer: uuids("load_balancer"),
            policies: uuids("policies"),
            options: map_col(row, "options"),
            external_ids: map_col(row, "external_ids"),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouterPort {
    pub uuid: Uuid,
    pub name: String,
    pub mac: String,
    pub networks: Vec<String>,
    pub gateway_chassis: Vec<Uuid>,
    pub options: BTreeMap<String, String>,
    pub ipv6_ra_configs: BTreeMap<String, String>,
    pub external_ids: BTreeMap<String, String>,
}

impl RouterPort {
    pub const COLUMNS: &'static [&'static str] =
        &["_uuid", "name", "mac", "networks", "gateway_chassis", "options", "ipv6_ra_configs", "external_ids"];

    pub fn select(uuid: Uuid) -> Operation {
        select(table::LOGICAL_ROUTER_PORT, Condition::uuid_is(uuid), Self::COLUMNS)
    }

    pub fn from_row(row: &Map<String, Value>) -> Option<RouterPort> {
        Some(RouterPort {
            uuid: uuid_col(row)?,
            name: str_col(row, "name"),
            mac: str_col(row, "mac"),
            networks: set_col(row, "networks"),
            gateway_chassis: row.get("gateway_chassis").map(uuid_set_of).unwrap_or_default(),
            options: map_col(row, "options"),
            ipv6_ra_configs: map_col(row, "ipv6_ra_configs"),
            external_ids: map_col(row, "external_ids"),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GatewayChassis {
    pub uuid: Uuid,
    pub name: String,
    pub chassis_name: String,
    pub priority: i64,
    pub external_ids: BTreeMap<String, String>,
}

impl GatewayChassis {
    pub const COLUMNS: &'static [&'static str] = &["_uuid", "name", "chassis_name", "priority", "external_ids"];

    pub fn select(uuid: Uuid) -> Operation {
        select(table::GATEWAY_CHASSIS, Condition::uuid_is(uuid), Self::COLUMNS)
    }

    pub fn from_row(row: &Map<String, Value>) -> Option<GatewayChassis> {
        Some(GatewayChassis {
            uuid: uuid_col(row)?,
            name: str_col(row, "name"),
            chassis_name: str_col(row, "chassis_name"),
            priority: row.get("priority").and_then(Value::as_i64).unwrap_or_default(),
            external_ids: map_col(row, "external_ids"),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Nat {
    pub uuid: Uuid,
    pub kind: String,
    pub external_ip: String,
    pub logical_ip: String,
    pub external_ids: BTreeMap<String, String>,
}

impl Nat {
    pub const COLUMNS: &'static [&'static str] = &["_uuid", "type", "external_ip", "logical_ip", "external_ids"];

    pub fn select(uuid: Uuid) -> Operation {
        select(table::NAT, Condition::uuid_is(uuid), Self::COLUMNS)
    }

    pub fn from_row(row: &Map<String, Value>) -> Option<Nat> {
        Some(Nat {
            uuid: uuid_col(row)?,
            kind: str_col(row, "type"),
            external_ip: str_col(row, "external_ip"),
            logical_ip: str_col(row, "logical_ip"),
            external_ids: map_col(row, "external_ids"),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StaticRoute {
    pub uuid: Uuid,
    pub ip_prefix: String,
    pub nexthop: String,
    pub output_port: Option<String>,
    pub external_ids: BTreeMap<String, String>,
}

impl StaticRoute {
    pub const COLUMNS: &'static [&'static str] = &["_uuid", "ip_prefix", "nexthop", "output_port", "external_ids"];

    pub fn select(uuid: Uuid) -> Operation {
        select(table::STATIC_ROUTE, Condition::uuid_is(uuid), Self::COLUMNS)
    }

    pub fn from_row(row: &Map<String, Value>) -> Option<StaticRoute> {
        Some(StaticRoute {
            uuid: uuid_col(row)?,
            ip_prefix: str_col(row, "ip_prefix"),
            nexthop: str_col(row, "nexthop"),
            output_port: row.get("output_port").and_then(crate::ovsdb::value::optional_string),
            external_ids: map_col(row, "external_ids"),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoadBalancer {
    pub uuid: Uuid,
    pub name: String,
    pub vips: BTreeMap<String, String>,
    pub protocol: Option<String>,
    pub selection_fields: Vec<String>,
    pub external_ids: BTreeMap<String, String>,
}

impl LoadBalancer {
    pub const COLUMNS: &'static [&'static str] =
        &["_uuid", "name", "vips", "protocol", "selection_fields", "external_ids"];

    pub fn select(uuid: Uuid) -> Operation {
        select(table::LOAD_BALANCER, Condition::uuid_is(uuid), Self::COLUMNS)
    }

    pub fn from_row(row: &Map<String, Value>) -> Option<LoadBalancer> {
        Some(LoadBalancer {
            uuid: uuid_col(row)?,
            name: str_col(row, "name"),
            vips: map_col(row, "vips"),
            protocol: row.get("protocol").and_then(crate::ovsdb::value::optional_string),
            selection_fields: set_col(row, "selection_fields"),
            external_ids: map_col(row, "external_ids"),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PortGroup {
    pub uuid: Uuid,
    pub name: String,
    pub ports: Vec<Uuid>,
    pub acls: Vec<Uuid>,
    pub external_ids: BTreeMap<String, String>,
}

impl PortGroup {
    pub const COLUMNS: &'static [&'static str] = &["_uuid", "name", "ports", "acls", "external_ids"];

    pub fn select(uuid: Uuid) -> Operation {
        select(table::PORT_GROUP, Condition::uuid_is(uuid), Self::COLUMNS)
    }

    /// Without the `ports` and `acls` lists (see [`Switch::select_light`]).
    pub fn select_light(uuid: Uuid) -> Operation {
        select(table::PORT_GROUP, Condition::uuid_is(uuid), &["_uuid", "name", "external_ids"])
    }

    /// One row iff the group exists and holds `port`.
    pub fn select_containing(uuid: Uuid, port: Uuid) -> Operation {
        Operation::Select {
            table: table::PORT_GROUP.into(),
            conditions: vec![
                Condition::uuid_is(uuid),
                Condition("ports".into(), Function::Includes, crate::ovsdb::value::uuid(port)),
            ],
            columns: Some(vec!["_uuid".into()]),
        }
    }

    pub fn from_row(row: &Map<String, Value>) -> Option<PortGroup> {
        Some(PortGroup {
            uuid: uuid_col(row)?,
            name: str_col(row, "name"),
            ports: row.get("ports").map(uuid_set_of).unwrap_or_default(),
            acls: row.get("acls").map(uuid_set_of).unwrap_or_default(),
            external_ids: map_col(row, "external_ids"),
        })
    }
}

/// `external_ids includes {owner, key: value}` on any table: the rows of
/// one router (NAT, Load_Balancer). A server-side scan of that table.
pub fn select_tagged(table: &str, owner: &Owner, key: &str, value: &str, columns: &[&str]) -> Operation {
    select(table, tagged(owner, key, value.to_string()), columns)
}

/// Every row of a select result.
pub fn all_rows(result: &Value) -> impl Iterator<Item = &Map<String, Value>> {
    result.get("rows").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_object)
}

/// The first row of a select result, if any.
pub fn first_row(result: &Value) -> Option<&Map<String, Value>> {
    result.get("rows")?.as_array()?.first()?.as_object()
}
