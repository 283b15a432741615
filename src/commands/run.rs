//! Process start-up for a CloudStack command: log, configuration, argv
//! and payload, then prepare the command's job (every check before any
//! connection) and run it; the one place a command's result becomes stdout
//! and an exit code.

use std::time::Instant;

use super::engine::Context;
use super::registry;
use crate::cli::{self, Invocation};
use crate::config::{Config, Local};
use crate::error::{Error, ExitCode};
use crate::nb::Owner;
use crate::{log, output};

/// The whole program: argv in, exit code out; stdout only through `output`.
pub fn main(args: &[std::ffi::OsString]) -> ExitCode {
    let started = Instant::now();
    let mut local = Local::load();
    let (env_error, file_error) = (local.env_error.take(), local.file_error.take());
    local.init_log();

    let result = match env_error.or(file_error) {
        Some(e) => Err(e),
        None => cli::parse_os(args),
    };
    let inv = match result {
        Ok(inv) => inv,
        Err(e) => return fail(&cli::command_name(args), &e, started, None),
    };
    if !inv.unknown_flags.is_empty() {
        log::info("ignoring unknown arguments", &[("command", &inv.command), ("args", &inv.unknown_flags.join(" "))]);
    }
    if log::enabled(log::Level::Debug) {
        log::debug(
            "invocation",
            &[
                ("command", &inv.command),
                ("style", &format!("{:?}", inv.style)),
                ("timeout_s", &inv.timeout.as_secs()),
                ("registration", &log::redacted(&inv.payload.physical_details)),
            ],
        );
    }
    let settings = local.settings(inv.payload.physical_details.clone());
    let config = match Config::parse(&settings) {
        Ok(c) => c,
        Err(e) => return fail(&inv.command, &e, started, Some(&inv)),
    };
    let owner = Owner(config.owner.clone());
    let ctx = Context { deadline: inv.deadline, inv, config, owner };
    match registry::prepare(&ctx).and_then(|job| ctx.run(job)) {
        Ok(outcome) => {
            if let Some(out) = &outcome.output {
                output::print_json(out);
            }
            log::info(
                "ok",
                &[
                    ("command", &ctx.inv.command),
                    ("network_id", &ctx.payload().str("network_id").unwrap_or_default()),
                    ("vpc_id", &ctx.payload().str("vpc_id").unwrap_or_default()),
                    ("nic_uuid", &ctx.payload().str("nic_uuid").unwrap_or_default()),
                    ("outcome", &"ok"),
                    ("rows_changed", &outcome.changes),
                    ("attempts", &outcome.attempts),
                    ("bytes_read", &outcome.bytes_read),
                    ("bytes_written", &outcome.bytes_written),
                    ("latency_ms", &format!("{:.3}", started.elapsed().as_secs_f64() * 1000.0)),
                ],
            );
            ExitCode::Success
        }
        Err(e) => fail(&ctx.inv.command.clone(), &e, started, Some(&ctx.inv)),
    }
}

fn fail(command: &str, e: &Error, started: Instant, inv: Option<&Invocation>) -> ExitCode {
    let code = e.exit_code();
    let field = |k: &str| inv.and_then(|i| i.payload.str(k)).unwrap_or_default();
    log::event(
        log::Level::Error,
        &e.chain(),
        &[
            ("command", &command),
            ("network_id", &field("network_id")),
            ("vpc_id", &field("vpc_id")),
            ("nic_uuid", &field("nic_uuid")),
            ("outcome", &"error"),
            ("exit_code", &(code as i32)),
            ("latency_ms", &format!("{:.3}", started.elapsed().as_secs_f64() * 1000.0)),
        ],
    );
    output::print_error(&e.chain());
    code
}
