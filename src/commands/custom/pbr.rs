//! The `pbr-*` actions: read the holder of the state and the router, plan
//! with `plan::pbr`, write once; the message comes from the observed state
//! the plan was made against.

use std::cell::RefCell;

use serde_json::Value;

use super::Target;
use crate::commands::{Context, Outcome, RouterWant, Want};
use crate::error::Result;
use crate::payload::pbr::PbrAction;
use crate::plan::pbr::{self as planner, Holder, PbrIntent};
use crate::plan::Plan;

/// The intent and what to read for it.
pub(super) fn prepare(target: &Target, action: PbrAction) -> (PbrIntent, Want) {
    match target {
        Target::Network { scope, rs } => (
            PbrIntent { holder: Holder::Switch(scope.clone()), rs: rs.clone(), action },
            Want {
                switch: true,
                light: true,
                scope: Some(scope.clone()),
                router: Some(RouterWant::new(rs.clone())),
                ..Want::default()
            },
        ),
        Target::Vpc { rs, .. } => (
            PbrIntent { holder: Holder::Router(rs.clone()), rs: rs.clone(), action },
            Want { router: Some(RouterWant::new(rs.clone())), ..Want::default() },
        ),
    }
}

pub(super) fn run(ctx: &Context, target: &Target, action: PbrAction) -> Result<(Outcome, Value)> {
    let (intent, want) = prepare(target, action);
    let message = RefCell::new(Value::Null);
    let outcome = ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        planner::plan(&intent, obs, &mut plan)?;
        *message.borrow_mut() = planner::answer(&intent, obs)?;
        Ok(plan)
    })?;
    Ok((outcome, message.into_inner()))
}
