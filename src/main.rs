//! Thin entry point: all logic lives in the library. Operator requests
//! (`--help`, `extension-details`, `doctor`, …) are recognised by their
//! first argument; everything else is a CloudStack command.

fn main() -> std::process::ExitCode {
    // First: whatever goes wrong later is still one JSON line and exit 1.
    install_panic_hook();
    // Test builds only: proves the hook (tests/robustness.rs).
    #[cfg(debug_assertions)]
    if std::env::var_os("CLOUDSTACK_OVN_TEST_PANIC").is_some() {
        panic!("panic requested by CLOUDSTACK_OVN_TEST_PANIC");
    }
    // argv may hold any bytes (std::env::args() would panic on them).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = match cloudstack_ovn::operator::route_os(&args) {
        Some(code) => code,
        None => cloudstack_ovn::commands::main(&args) as u8,
    };
    std::process::ExitCode::from(code)
}

/// Make any panic end the process like any other failure: one JSON error
/// line on stdout, nothing on stderr (CloudStack merges it into the
/// output), exit code 1 (`Internal`). Exiting from the hook also avoids the
/// SIGABRT of the release profile's `panic = "abort"`.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let message = format!("internal error: {what}{at}");
        cloudstack_ovn::log::event(
            cloudstack_ovn::log::Level::Error,
            &message,
            &[("outcome", &"panic"), ("exit_code", &1)],
        );
        cloudstack_ovn::output::print_error(&message);
        // The one exit outside main's return value: a panic has no other way out.
        #[allow(clippy::disallowed_methods)]
        std::process::exit(cloudstack_ovn::error::ExitCode::Internal as i32);
    }));
}
