//! What a command reads and what it found: [`Want`] (the rows a command
//! needs), [`observe`] (the one read-only transaction that fetches them, by
//! `_uuid` or an indexed column) and [`Observed`] (the answer the planners
//! work on).
//!
//! `Observed` tells a row that was looked up and is absent from a row that
//! was never looked up: planning with a slot the command's `Want` did not
//! ask for is an internal error reported once, not a plan that inserts an
//! existing row and collides on `duplicate uuid` until the retries run out.

use std::cell::Cell;
use std::rc::Rc;

use uuid::Uuid;

use crate::error::Result;
use crate::nb::ids::{PublicNet, RouterScope, Scope};
use crate::nb::rows::{
    all_rows, first_row, select_tagged, DhcpOptions, Dns, GatewayChassis, LoadBalancer, Nat, Port, PortGroup, Router,
    RouterPort, StaticRoute, Switch,
};
use crate::nb::{key, table, DB};
use crate::ovsdb::{self, Client, Operation};

/// Which rows a command needs to see.
#[derive(Clone, Debug, Default)]
pub struct Want {
    pub switch: bool,
    /// Also find switches by name (a server-side scan of Logical_Switch,
    /// which has no name index; only implement-network pays for it).
    pub switch_by_name: bool,
    /// The NIC's port (by its deterministic uuid; needs `scope`).
    pub port: Option<String>,
    /// Several ports by uuid (restore-network).
    pub ports: Vec<Uuid>,
    /// NIC commands: read the switch and port group without their `ports`
    /// lists (which grow with the network) and ask the server whether they
    /// hold `port` instead.
    pub light: bool,
    /// Also look the port up by name: a scan, done only after an insert
    /// collided with a port of that name that is not ours.
    pub port_by_name: bool,
    /// The port of the NIC with this CloudStack id (legacy set-dhcp-options
    /// names the NIC by id only): a server-side scan of the port table,
    /// the one lookup that is not by index; see docs/performance.md.
    pub port_by_nic_id: Option<u64>,
    /// DHCP rows by `_uuid`.
    pub dhcp: Vec<Uuid>,
    /// Every DHCP row of this network (`destroy`, `remove-dhcp-subnet`):
    /// a server-side scan of DHCP_Options, which holds a few rows per
    /// network; see docs/performance.md.
    pub all_dhcp: bool,
    pub dns: bool,
    /// A shared or L2 network's localnet port (needs `scope`).
    pub localnet: bool,
    /// The network's port group (needs `scope`).
    pub port_group: bool,
    pub scope: Option<Scope>,
    pub router: Option<RouterWant>,
    /// After an index collision: the row holding the name (table, uuid, name).
    pub holder: Option<(String, Uuid, String)>,
    /// Which of the network's switch ports carry our tag (a scan of the
    /// port table; destroy-network only, see docs/performance.md).
    pub our_ports: bool,
    /// After a failed name guard on a table without a name index: look the
    /// name up (a scan, only then); rows other than `uuid` hold it.
    pub name_holder: Option<(String, String, Uuid)>,
    /// vm-data rows by `_uuid` (UserData, docs/metadata.md).
    pub vm_data: Vec<Uuid>,
    /// Every vm-data row of this network (destroy-network): a server-side
    /// scan of DNS by owner tag; see docs/performance.md.
    pub all_vm_data: bool,
    /// NICs (their vm-data rows are in `vm_data`) whose stored password's
    /// acknowledgement to look up in the SB once the NB read shows its
    /// generation ([`pending_acks`], [`read_acks`]): an acknowledged
    /// password leaves the NB with the command's write.
    pub pw_acks: Vec<String>,
}

/// A row holding a unique name we tried to use (found from a commit's
/// "constraint violation" details): table, uuid, the name, its external_ids.
#[derive(Clone, Debug)]
pub struct Holder {
    pub table: String,
    pub uuid: Uuid,
    pub name: String,
    pub external_ids: std::collections::BTreeMap<String, String>,
}

/// The routing rows a command needs to see.
#[derive(Clone, Debug)]
pub struct RouterWant {
    pub rs: RouterScope,
    /// The guest network's router port and its peer (needs `Want::scope`).
    pub guest: bool,
    pub public: PublicLookup,
    /// Configured gateway chassis, whose Gateway_Chassis rows to read.
    pub chassis: Vec<String>,
    pub nats: Vec<Uuid>,
    pub lbs: Vec<Uuid>,
    /// Every NAT and Load_Balancer row of the router (firewall mapping,
    /// teardown): server-side scans by owner tag; see docs/performance.md.
    pub all_rows: bool,
    /// Every port of ours carrying the router's tag (the network's, or the
    /// VPC's tiers', VM ports) into `Observed::ports`: a scan of the port
    /// table by tag, for the PBR actions that can change a next hop.
    pub tagged_ports: bool,
}

impl RouterWant {
    pub fn new(rs: RouterScope) -> RouterWant {
        RouterWant {
            rs,
            guest: false,
            public: PublicLookup::None,
            chassis: Vec::new(),
            nats: Vec::new(),
            lbs: Vec::new(),
            all_rows: false,
            tagged_ports: false,
        }
    }
}

/// How to find the public switch.
#[derive(Clone, Debug)]
pub enum PublicLookup {
    None,
    /// The payload names the public network: by its deterministic uuid.
    Net(PublicNet),
    /// Teardown without public fields: the switch holding the router's
    /// gateway peer (a scan of Logical_Switch; see docs/performance.md).
    ByGatewayPeer,
}

/// One slot of [`Observed`]: not read, or read with what came back.
#[derive(Clone, Debug)]
pub struct Read<T> {
    read: bool,
    row: Option<T>,
}

impl<T> Default for Read<T> {
    fn default() -> Self {
        Read { read: false, row: None }
    }
}

impl<T> Read<T> {
    /// Read, and found.
    pub fn found(row: T) -> Self {
        Read { read: true, row: Some(row) }
    }

    /// Read, and absent.
    pub fn absent() -> Self {
        Read { read: true, row: None }
    }

    /// Read, with this answer.
    pub fn answer(row: Option<T>) -> Self {
        Read { read: true, row }
    }

    fn set(&mut self, row: Option<T>) {
        self.read = true;
        self.row = row;
    }
}

/// A slot of several rows (read by a list of uuids or a tagged scan).
#[derive(Clone, Debug)]
pub struct ReadAll<T> {
    read: bool,
    rows: Vec<T>,
}

impl<T> Default for ReadAll<T> {
    fn default() -> Self {
        ReadAll { read: false, rows: Vec::new() }
    }
}

impl<T> ReadAll<T> {
    pub fn found(rows: Vec<T>) -> Self {
        ReadAll { read: true, rows }
    }

    fn add(&mut self, row: T, same: impl Fn(&T, &T) -> bool) {
        self.read = true;
        if !self.rows.iter().any(|r| same(r, &row)) {
            self.rows.push(row);
        }
    }
}

/// What the read-only transaction found. Planners see the rows through
/// accessors that record a read of a slot the command did not ask for
/// ([`Observed::misread`]).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub switch: Read<Switch>,
    /// Ports read by their uuids, for commands about several NICs
    /// (restore-network).
    pub ports: ReadAll<Port>,
    /// Other switches with our switch's name (only `implement-network`
    /// looks; empty for the others, which do not check).
    pub same_name: Vec<Switch>,
    pub port: Read<Port>,
    pub dhcp: ReadAll<DhcpOptions>,
    pub dns: Read<Dns>,
    // Routing (plan::router).
    pub router: Read<Router>,
    pub guest_port: Read<RouterPort>,
    pub guest_peer: Read<Port>,
    pub gateway_port: Read<RouterPort>,
    pub gateway_peer: Read<Port>,
    pub gateway_chassis: ReadAll<GatewayChassis>,
    pub public_switch: Read<Switch>,
    /// The public switch's localnet port.
    pub localnet: Read<Port>,
    /// A shared or L2 network's localnet port (on the guest switch).
    pub guest_localnet: Read<Port>,
    pub route: Read<StaticRoute>,
    pub nats: ReadAll<Nat>,
    pub lbs: ReadAll<LoadBalancer>,
    // Filtering (plan::acl).
    pub port_group: Read<PortGroup>,
    /// Server-side answers to "does the switch / the port group hold the
    /// port?", so NIC commands need not download those lists; `None` when
    /// the lists themselves were read.
    pub port_on_switch: Option<bool>,
    pub port_in_group: Option<bool>,
    /// The network's ACLs that carry our tag (read with the full port
    /// group); `None` when not read. Only these may leave the group.
    pub our_acls: Option<std::collections::BTreeSet<Uuid>>,
    /// The network's switch ports that carry our tag (destroy only).
    pub our_ports: Option<std::collections::BTreeSet<Uuid>>,
    /// The row that made the last attempt's insert collide on a unique name.
    pub holder: Option<Holder>,
    // UserData (plan::metadata).
    /// The network's metadata localport; read with any DHCP or DNS row.
    pub md_port: Read<Port>,
    /// vm-data rows (DNS rows no switch references).
    pub vm_data: ReadAll<Dns>,
    /// (NIC, `pw-gen`) pairs some chassis acknowledged (SB). Read and
    /// empty when the SB could not tell: the password then stays.
    pub pw_acks: ReadAll<(String, String)>,
    /// The first slot planning used without the command reading it; shared
    /// by clones (restore-network plans on a modified copy).
    pub misread: Misread,
}

/// Where [`Observed`]'s accessors record a read of a slot nobody asked
/// for (opaque; public only so tests can build an `Observed` literally).
#[derive(Clone, Debug, Default)]
pub struct Misread(Rc<Cell<Option<&'static str>>>);

impl Misread {
    fn record(&self, slot: &'static str) {
        self.0.set(self.0.get().or(Some(slot)));
    }
}

macro_rules! one {
    ($($(#[$doc:meta])* $name:ident: $t:ty;)*) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> Option<&$t> {
            if !self.$name.read {
                self.misread.record(stringify!($name));
            }
            self.$name.row.as_ref()
        }
    )*};
}

macro_rules! all {
    ($($(#[$doc:meta])* $name:ident: $t:ty;)*) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> &[$t] {
            if !self.$name.read {
                self.misread.record(stringify!($name));
            }
            &self.$name.rows
        }
    )*};
}

impl Observed {
    /// Nothing read yet, and every slot marked read and empty: a network
    /// that does not exist (unit tests plan against it with no NB).
    pub fn nothing_exists() -> Observed {
        Observed {
            switch: Read::absent(),
            ports: ReadAll::found(Vec::new()),
            same_name: Vec::new(),
            port: Read::absent(),
            dhcp: ReadAll::found(Vec::new()),
            dns: Read::absent(),
            router: Read::absent(),
            guest_port: Read::absent(),
            guest_peer: Read::absent(),
            gateway_port: Read::absent(),
            gateway_peer: Read::absent(),
            gateway_chassis: ReadAll::found(Vec::new()),
            public_switch: Read::absent(),
            localnet: Read::absent(),
            guest_localnet: Read::absent(),
            route: Read::absent(),
            nats: ReadAll::found(Vec::new()),
            lbs: ReadAll::found(Vec::new()),
            port_group: Read::absent(),
            port_on_switch: None,
            port_in_group: None,
            our_acls: None,
            our_ports: None,
            holder: None,
            md_port: Read::absent(),
            vm_data: ReadAll::found(Vec::new()),
            pw_acks: ReadAll::found(Vec::new()),
            misread: Misread::default(),
        }
    }

    one! {
        switch: Switch;
        port: Port;
        dns: Dns;
        router: Router;
        guest_port: RouterPort;
        guest_peer: Port;
        gateway_port: RouterPort;
        gateway_peer: Port;
        public_switch: Switch;
        /// The public switch's localnet port (read when the command names
        /// the public network; see [`Observed::localnet_if_read`]).
        localnet: Port;
        /// A shared or L2 network's localnet port.
        guest_localnet: Port;
        route: StaticRoute;
        port_group: PortGroup;
        /// The network's metadata localport (UserData).
        md_port: Port;
    }

    all! {
        ports: Port;
        dhcp: DhcpOptions;
        gateway_chassis: GatewayChassis;
        nats: Nat;
        lbs: LoadBalancer;
        vm_data: Dns;
        pw_acks: (String, String);
    }

    /// The metadata localport when the command read it (every command that
    /// reads DHCP or DNS rows does): DHCP and DNS keys then point at it.
    pub fn md_port_if_read(&self) -> Option<&Port> {
        self.md_port.row.as_ref()
    }

    /// The localnet port when the command looked it up; teardown without
    /// the public fields derives it from the public switch instead.
    pub fn localnet_if_read(&self) -> Option<&Port> {
        self.localnet.row.as_ref()
    }

    /// The guest router peer when the command looked it up (destroy of a
    /// network without a router does not).
    pub fn guest_peer_if_read(&self) -> Option<&Port> {
        self.guest_peer.row.as_ref()
    }

    /// The first slot planning used that the command's [`Want`] did not read.
    pub fn misread(&self) -> Option<&'static str> {
        self.misread.0.get()
    }

    /// Is `port` one of the network switch's ports?
    pub fn switch_holds(&self, port: Uuid) -> bool {
        self.port_on_switch.unwrap_or_else(|| self.switch().is_some_and(|sw| sw.ports.contains(&port)))
    }

    /// Is `port` in the network's port group?
    pub fn group_holds(&self, port: Uuid) -> bool {
        self.port_in_group.unwrap_or_else(|| self.port_group().is_some_and(|pg| pg.ports.contains(&port)))
    }

    pub fn dhcp_row(&self, uuid: Uuid) -> Option<&DhcpOptions> {
        self.dhcp().iter().find(|d| d.uuid == uuid)
    }

    pub fn nat(&self, uuid: Uuid) -> Option<&Nat> {
        self.nats().iter().find(|n| n.uuid == uuid)
    }

    pub fn lb(&self, uuid: Uuid) -> Option<&LoadBalancer> {
        self.lbs().iter().find(|l| l.uuid == uuid)
    }

    fn mark_read(&mut self, slot: &Slot) {
        match slot {
            Slot::Switch => self.switch.read = true,
            Slot::SameName
            | Slot::PortOnSwitch
            | Slot::PortInGroup
            | Slot::OurAcls
            | Slot::OurPorts
            | Slot::Holder
            | Slot::NameHolder => {}
            Slot::Port => self.port.read = true,
            Slot::Dhcp => self.dhcp.read = true,
            Slot::Dns => self.dns.read = true,
            Slot::Router => self.router.read = true,
            Slot::GatewayPort => self.gateway_port.read = true,
            Slot::GatewayPeer => self.gateway_peer.read = true,
            Slot::Route => self.route.read = true,
            Slot::GatewayChassis => self.gateway_chassis.read = true,
            Slot::Nat => self.nats.read = true,
            Slot::Lb => self.lbs.read = true,
            Slot::GuestPort => self.guest_port.read = true,
            Slot::GuestPeer => self.guest_peer.read = true,
            Slot::PublicSwitch => self.public_switch.read = true,
            Slot::Localnet => self.localnet.read = true,
            Slot::GuestLocalnet => self.guest_localnet.read = true,
            Slot::PortGroup => self.port_group.read = true,
            Slot::Ports | Slot::TaggedPorts => self.ports.read = true,
            Slot::MdPort => self.md_port.read = true,
            Slot::VmData => self.vm_data.read = true,
        }
    }
}

/// One read-only transaction for everything in `want`, by `_uuid` or by
/// an indexed column (the few scans are named in `Want`).
pub fn observe(client: &mut Client, want: &Want) -> Result<Observed> {
    let mut ops = Vec::new();
    let mut slots = Vec::new();
    let mut ask = |op: Operation, slot: Slot| {
        ops.push(op);
        slots.push(slot);
    };
    if let Some(s) = &want.scope {
        if want.switch && want.light {
            ask(Switch::select_light(s.switch_uuid()), Slot::Switch);
        } else if want.switch {
            ask(Switch::select(s.switch_uuid()), Slot::Switch);
        }
        if let Some(name) = &want.port {
            let port = s.port_uuid(name);
            ask(Port::select(port), Slot::Port);
            if want.port_by_name {
                ask(Port::select_by_name(name), Slot::Port);
            }
            if want.light {
                ask(Switch::select_containing(s.switch_uuid(), port), Slot::PortOnSwitch);
                if want.port_group {
                    ask(PortGroup::select_containing(s.port_group_uuid(), port), Slot::PortInGroup);
                }
            }
        }
        if want.switch_by_name {
            ask(Switch::select_by_name(&s.switch_name()), Slot::SameName);
        }
        if let Some(nic_id) = want.port_by_nic_id {
            ask(Port::select_by_nic_id(&s.owner, nic_id), Slot::Port);
        }
        if want.all_dhcp {
            ask(DhcpOptions::select_by_network(&s.owner, s.network_id), Slot::Dhcp);
        }
        // Whoever writes the network's DHCP or DNS rows must keep them
        // pointing at the metadata localport when there is one (UserData;
        // one select by _uuid).
        if want.all_dhcp || !want.dhcp.is_empty() || !want.vm_data.is_empty() || want.dns {
            ask(Port::select(crate::metadata::port_uuid(&s.owner, s.network_id)), Slot::MdPort);
        }
        if want.all_vm_data {
            ask(crate::metadata::select_network_rows(&s.owner, s.network_id), Slot::VmData);
        }
        if want.dns {
            ask(Dns::select(s.dns_uuid()), Slot::Dns);
        }
        if want.localnet {
            ask(Port::select_localnet(s.localnet_uuid()), Slot::GuestLocalnet);
        }
        if want.our_ports {
            let id = s.network_id.to_string();
            ask(select_tagged(table::LOGICAL_SWITCH_PORT, &s.owner, key::NETWORK_ID, &id, &["_uuid"]), Slot::OurPorts);
        }
        if want.port_group && want.light {
            ask(PortGroup::select_light(s.port_group_uuid()), Slot::PortGroup);
        } else if want.port_group {
            ask(PortGroup::select(s.port_group_uuid()), Slot::PortGroup);
            // Which of the group's ACLs are ours: an operator's own ACL on
            // our group must survive a rule-set replacement (a scan of the
            // ACL table by tag; see docs/performance.md).
            let id = s.network_id.to_string();
            ask(select_tagged(table::ACL, &s.owner, key::NETWORK_ID, &id, &["_uuid"]), Slot::OurAcls);
        }
    }
    for u in &want.ports {
        ask(Port::select(*u), Slot::Ports);
    }
    for u in &want.vm_data {
        ask(Dns::select(*u), Slot::VmData);
    }
    if let Some((t, name, _)) = &want.name_holder {
        let columns = Some(vec!["_uuid".to_string(), "external_ids".to_string()]);
        let conditions = vec![ovsdb::Condition::eq("name", name.as_str())];
        ask(Operation::Select { table: t.clone(), conditions, columns }, Slot::NameHolder);
    }
    if let Some((t, u, _)) = &want.holder {
        let columns = Some(vec!["_uuid".to_string(), "external_ids".to_string()]);
        ask(
            Operation::Select { table: t.clone(), conditions: vec![ovsdb::Condition::uuid_is(*u)], columns },
            Slot::Holder,
        );
    }
    if let Some(rw) = &want.router {
        let rs = &rw.rs;
        ask(Router::select(rs.uuid()), Slot::Router);
        ask(RouterPort::select(rs.gateway_port_uuid()), Slot::GatewayPort);
        ask(Port::select(rs.gateway_peer_uuid()), Slot::GatewayPeer);
        ask(StaticRoute::select(rs.route_uuid()), Slot::Route);
        for c in &rw.chassis {
            ask(GatewayChassis::select(rs.gateway_chassis_uuid(c)), Slot::GatewayChassis);
        }
        if !rw.chassis.is_empty() {
            // Every pin of ours on the router (those of chassis no longer
            // configured go; an operator's own pin stays): a small table.
            let (k, v) = rs.tag();
            ask(select_tagged(table::GATEWAY_CHASSIS, &rs.owner, k, &v, GatewayChassis::COLUMNS), Slot::GatewayChassis);
        }
        for u in &rw.nats {
            ask(Nat::select(*u), Slot::Nat);
        }
        for u in &rw.lbs {
            ask(LoadBalancer::select(*u), Slot::Lb);
        }
        if rw.all_rows {
            let (k, v) = rs.tag();
            ask(select_tagged(table::NAT, &rs.owner, k, &v, Nat::COLUMNS), Slot::Nat);
            ask(select_tagged(table::LOAD_BALANCER, &rs.owner, k, &v, LoadBalancer::COLUMNS), Slot::Lb);
        }
        if rw.tagged_ports {
            let (k, v) = rs.tag();
            ask(select_tagged(table::LOGICAL_SWITCH_PORT, &rs.owner, k, &v, Port::COLUMNS), Slot::TaggedPorts);
        }
        if let (true, Some(s)) = (rw.guest, &want.scope) {
            ask(RouterPort::select(s.guest_port_uuid()), Slot::GuestPort);
            ask(Port::select(s.guest_peer_uuid()), Slot::GuestPeer);
        }
        match &rw.public {
            PublicLookup::None => {}
            PublicLookup::Net(net) => {
                // Light: a public VLAN may carry thousands of routers' ports.
                ask(Switch::select_light(net.switch_uuid(&rs.owner)), Slot::PublicSwitch);
                ask(Port::select_localnet(net.localnet_uuid(&rs.owner)), Slot::Localnet);
            }
            PublicLookup::ByGatewayPeer => ask(Switch::select_holding(rs.gateway_peer_uuid()), Slot::PublicSwitch),
        }
    }
    for u in &want.dhcp {
        ask(DhcpOptions::select(*u), Slot::Dhcp);
    }
    let mut obs = Observed::default();
    // Every slot asked for is read, whether or not a row came back.
    for slot in &slots {
        obs.mark_read(slot);
    }
    if want.router.is_some() {
        // Every configured chassis was looked up (none configured: nothing to read).
        obs.gateway_chassis.read = true;
    }
    if ops.is_empty() {
        return Ok(obs);
    }
    let results = client.transact(DB, &ops)?;
    for (slot, result) in slots.iter().zip(results.iter()) {
        match slot {
            Slot::Switch => obs.switch.set(first_row(result).and_then(Switch::from_row)),
            Slot::SameName => obs.same_name = all_rows(result).filter_map(Switch::from_row).collect(),
            Slot::Port => {
                if obs.port.row.is_none() {
                    obs.port.set(first_row(result).and_then(Port::from_row));
                }
            }
            Slot::PortOnSwitch => obs.port_on_switch = Some(first_row(result).is_some()),
            Slot::PortInGroup => obs.port_in_group = Some(first_row(result).is_some()),
            Slot::Dhcp => {
                for d in all_rows(result).filter_map(DhcpOptions::from_row) {
                    obs.dhcp.add(d, |a, b| a.uuid == b.uuid);
                }
            }
            Slot::Dns => obs.dns.set(first_row(result).and_then(Dns::from_row)),
            Slot::Router => obs.router.set(first_row(result).and_then(Router::from_row)),
            Slot::GatewayPort => obs.gateway_port.set(first_row(result).and_then(RouterPort::from_row)),
            Slot::GatewayPeer => obs.gateway_peer.set(first_row(result).and_then(Port::from_row)),
            Slot::Route => obs.route.set(first_row(result).and_then(StaticRoute::from_row)),
            Slot::GatewayChassis => {
                for g in all_rows(result).filter_map(GatewayChassis::from_row) {
                    obs.gateway_chassis.add(g, |a, b| a.uuid == b.uuid);
                }
            }
            Slot::Nat => {
                for n in all_rows(result).filter_map(Nat::from_row) {
                    obs.nats.add(n, |a, b| a.uuid == b.uuid);
                }
            }
            Slot::Lb => {
                for l in all_rows(result).filter_map(LoadBalancer::from_row) {
                    obs.lbs.add(l, |a, b| a.uuid == b.uuid);
                }
            }
            Slot::TaggedPorts => {
                for p in all_rows(result).filter_map(Port::from_row) {
                    obs.ports.add(p, |a, b| a.uuid == b.uuid);
                }
            }
            Slot::Ports => {
                if let Some(p) = first_row(result).and_then(Port::from_row) {
                    obs.ports.add(p, |a, b| a.uuid == b.uuid);
                }
            }
            Slot::PortGroup => obs.port_group.set(first_row(result).and_then(PortGroup::from_row)),
            Slot::Holder => {
                if let (Some((t, u, name)), Some(row)) = (&want.holder, first_row(result)) {
                    obs.holder = Some(Holder {
                        table: t.clone(),
                        uuid: *u,
                        name: name.clone(),
                        external_ids: row
                            .get("external_ids")
                            .map(crate::ovsdb::value::string_map_of)
                            .unwrap_or_default(),
                    });
                }
            }
            Slot::NameHolder => {
                let Some((t, name, ours)) = &want.name_holder else { continue };
                let other = all_rows(result).find_map(|row| {
                    let uuid = row.get("_uuid").and_then(crate::ovsdb::value::as_uuid)?;
                    (uuid != *ours).then(|| Holder {
                        table: t.clone(),
                        uuid,
                        name: name.clone(),
                        external_ids: row
                            .get("external_ids")
                            .map(crate::ovsdb::value::string_map_of)
                            .unwrap_or_default(),
                    })
                });
                obs.holder = obs.holder.take().or(other);
            }
            Slot::OurPorts => {
                obs.our_ports = Some(
                    all_rows(result).filter_map(|r| r.get("_uuid").and_then(crate::ovsdb::value::as_uuid)).collect(),
                )
            }
            Slot::OurAcls => {
                obs.our_acls = Some(
                    all_rows(result).filter_map(|r| r.get("_uuid").and_then(crate::ovsdb::value::as_uuid)).collect(),
                )
            }
            Slot::GuestPort => obs.guest_port.set(first_row(result).and_then(RouterPort::from_row)),
            Slot::GuestPeer => obs.guest_peer.set(first_row(result).and_then(Port::from_row)),
            Slot::PublicSwitch => obs.public_switch.set(first_row(result).and_then(Switch::from_row)),
            Slot::Localnet => obs.localnet.set(first_row(result).and_then(Port::from_row)),
            Slot::GuestLocalnet => obs.guest_localnet.set(first_row(result).and_then(Port::from_row)),
            Slot::MdPort => obs.md_port.set(first_row(result).and_then(Port::from_row)),
            Slot::VmData => {
                for d in all_rows(result).filter_map(Dns::from_row) {
                    obs.vm_data.add(d, |a, b| a.uuid == b.uuid);
                }
            }
        }
    }
    Ok(obs)
}

/// The stored passwords [`Want::pw_acks`] asks about: (NIC, `pw-gen`) of
/// each such NIC's observed vm-data row that holds a password.
pub fn pending_acks(want: &Want, obs: &Observed) -> Vec<(String, String)> {
    want.pw_acks
        .iter()
        .filter_map(|nic| {
            let row = obs.vm_data.rows.iter().find(|d| d.external_ids.get(key::NIC_UUID) == Some(nic))?;
            let ids = &row.external_ids;
            ids.get(crate::metadata::key::PASSWORD)?;
            Some((nic.clone(), ids.get(crate::metadata::key::PASSWORD_GEN)?.clone()))
        })
        .collect()
}

/// One read-only SB transaction, one select per password: which of
/// `pending` some chassis acknowledged (docs/metadata.md,
/// "Acknowledgements").
pub fn read_acks(
    sb: &mut Client,
    pending: &[(String, String)],
) -> std::result::Result<Vec<(String, String)>, ovsdb::Error> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let ops: Vec<Operation> = pending.iter().map(|(nic, gen)| crate::metadata::select_acks(nic, gen)).collect();
    let results = sb.transact(crate::nb::SB_DB, &ops)?;
    Ok(pending.iter().zip(results.iter()).filter(|(_, r)| first_row(r).is_some()).map(|(p, _)| p.clone()).collect())
}

enum Slot {
    Switch,
    SameName,
    Port,
    Dhcp,
    Dns,
    Router,
    GatewayPort,
    GatewayPeer,
    Route,
    GatewayChassis,
    Nat,
    Lb,
    GuestPort,
    GuestPeer,
    PublicSwitch,
    Localnet,
    GuestLocalnet,
    PortGroup,
    OurAcls,
    OurPorts,
    Holder,
    NameHolder,
    Ports,
    TaggedPorts,
    PortOnSwitch,
    PortInGroup,
    MdPort,
    VmData,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_not_read_is_not_an_absent_row() {
        let obs = Observed { switch: Read::absent(), ..Observed::default() };
        assert!(obs.switch().is_none());
        assert_eq!(obs.misread(), None, "read and absent is fine");
        assert!(obs.router().is_none());
        assert!(obs.nats().is_empty());
        assert_eq!(obs.misread(), Some("router"), "the first slot used without reading it is reported");
        // Clones (restore-network plans on a modified copy) report to the original.
        let view = Observed { switch: Read::absent(), ..Observed::default() };
        let copy = view.clone();
        let _ = copy.dns();
        assert_eq!(view.misread(), Some("dns"));
        // The light localnet accessor never counts.
        let fresh = Observed::nothing_exists();
        let _ = Observed::default().localnet_if_read();
        assert!(fresh.localnet().is_none() && fresh.misread().is_none());
    }
}
