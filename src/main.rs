//! Thin entry point: all logic lives in the library. Operator requests
//! (`--help`, `extension-details`, `doctor`, …) are recognised by their
//! first argument; everything else is a CloudStack command.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let code = match cloudstack_ovn::operator::route(&args) {
        Some(code) => code,
        None => cloudstack_ovn::commands::main(&args) as u8,
    };
    std::process::ExitCode::from(code)
}
