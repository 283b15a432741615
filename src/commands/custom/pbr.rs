//! The `pbr-*` actions: read the holder of the state and the router, plan
//! with `plan::pbr`, write once.

use std::cell::RefCell;

use serde_json::Value;

use super::Target;
use crate::commands::{Context, Outcome, RouterWant, Want};
use crate::error::Result;
use crate::payload::pbr::PbrAction;
use crate::plan::pbr::{self as planner, Holder};

pub(super) fn run(ctx: &Context, target: &Target, action: &PbrAction) -> Result<(Outcome, Value)> {
    let (holder, rs, want) = match target {
        Target::Network { scope, rs } => (
            Holder::Switch(scope.clone()),
            rs.clone(),
            Want {
                switch: true,
                light: true,
                scope: Some(scope.clone()),
                router: Some(RouterWant::new(rs.clone())),
                ..Want::default()
            },
        ),
        Target::Vpc { rs, .. } => (
            Holder::Router(rs.clone()),
            rs.clone(),
            Want { router: Some(RouterWant::new(rs.clone())), ..Want::default() },
        ),
    };
    let message = RefCell::new(Value::Null);
    let outcome = ctx.converge(&want, |obs| planner::plan(&holder, &rs, action, obs, &message))?;
    Ok((outcome, message.into_inner()))
}
