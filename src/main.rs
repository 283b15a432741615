//! Thin entry point: all logic lives in the library (`commands::main`).

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    std::process::ExitCode::from(cloudstack_ovn::commands::main(&args) as u8)
}
