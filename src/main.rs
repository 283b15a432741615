//! Thin entry point: all logic lives in the library. Operator requests
//! (`--help`, `extension-details`, `doctor`, …) are recognised by their
//! first argument; everything else is a CloudStack command.

fn main() -> std::process::ExitCode {
    // First: whatever goes wrong later is still one JSON line and exit 1.
    cloudstack_ovn::output::install_panic_hook();
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
