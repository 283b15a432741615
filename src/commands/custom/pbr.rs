//! The `pbr-*` actions: what to read for one (the holder of the state and
//! the router, by `_uuid`) and the intent `plan::pbr` plans and reports on.

use super::Target;
use crate::observe::{RouterWant, Want};
use crate::payload::pbr::PbrAction;
use crate::plan::pbr::{Holder, PbrIntent};

/// The intent and what to read for it.
pub(super) fn prepare(target: &Target, action: PbrAction) -> (PbrIntent, Want) {
    let tagged_ports = crate::plan::pbr::may_change_next_hops(&action);
    match target {
        Target::Network { scope, rs } => (
            PbrIntent { holder: Holder::Switch(scope.clone()), rs: rs.clone(), action },
            Want {
                switch: true,
                light: true,
                scope: Some(scope.clone()),
                router: Some(RouterWant { tagged_ports, ..RouterWant::new(rs.clone()) }),
                ..Want::default()
            },
        ),
        Target::Vpc { rs, .. } => (
            PbrIntent { holder: Holder::Router(rs.clone()), rs: rs.clone(), action },
            Want { router: Some(RouterWant { tagged_ports, ..RouterWant::new(rs.clone()) }), ..Want::default() },
        ),
    }
}
