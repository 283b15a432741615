//! Operator subcommands: `--help`, `--version`, `extension-details`,
//! `doctor` and the hidden `generate man|completions <shell>`.
//!
//! These are for people and packaging scripts, never sent by CloudStack, so
//! they may print human text (still only through [`crate::output`]). The
//! CloudStack hot path never reaches clap: [`route`] looks at the first
//! argument only and hands everything else back.

pub mod args;
pub mod audit;
pub mod details;
pub mod doctor;

use clap::FromArgMatches;

use crate::output;
use args::{Cli, Generate, Operator};

/// First arguments that select the operator command line.
const WORDS: &[&str] = &[
    "-h",
    "--help",
    "help",
    "-V",
    "--version",
    "version",
    "extension-details",
    "doctor",
    "audit",
    "generate",
    "metadata-keygen",
    "agent",
];

/// Exit code of an operator subcommand that found a problem (`doctor`).
pub const EXIT_PROBLEM: u8 = 1;
/// Exit code of an operator usage error.
pub const EXIT_USAGE: u8 = 2;

/// `Some(exit code)` if `args` is an operator request (it has then been
/// run), `None` for a CloudStack command (nothing was done).
pub fn route(args: &[String]) -> Option<u8> {
    let first = args.get(1)?;
    WORDS.contains(&first.as_str()).then(|| main(args))
}

/// [`route`] for argv as the OS gives it. An operator request with an
/// argument that is not UTF-8 is a usage error (clap would need UTF-8 for
/// every option we have).
pub fn route_os(args: &[std::ffi::OsString]) -> Option<u8> {
    let first = args.get(1)?.to_str()?;
    if !WORDS.contains(&first) {
        return None;
    }
    match args.iter().map(|a| a.to_str().map(str::to_string)).collect::<Option<Vec<String>>>() {
        Some(utf8) => route(&utf8),
        None => {
            output::print_text("error: an argument is not valid UTF-8 (see --help)");
            Some(EXIT_USAGE)
        }
    }
}

/// Run an operator request.
pub fn main(args: &[String]) -> u8 {
    let mut args = args.to_vec();
    if args.get(1).map(String::as_str) == Some("version") {
        args[1] = "--version".into();
    }
    let matches = match args::command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => {
            // --help and --version arrive here too, as "errors" to display.
            output::print_text(e.render().to_string().trim_end());
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            output::print_text(e.render().to_string().trim_end());
            return EXIT_USAGE;
        }
    };
    match cli.command {
        None => {
            output::print_text(&help_text());
            0
        }
        Some(Operator::ExtensionDetails(a)) => details::run(&a),
        Some(Operator::Doctor(a)) => doctor::run(&a),
        Some(Operator::Audit(a)) => audit::run(&a),
        Some(Operator::MetadataKeygen { file }) => match crate::metadata::seal::keygen(&file) {
            Ok((public, digest)) => {
                output::print_text(&format!(
                    "{}={public}\n{}={digest}",
                    crate::metadata::PUBLIC_KEY_DETAIL,
                    crate::metadata::DIGEST_KEY_DETAIL
                ));
                0
            }
            Err(e) => {
                output::print_error(&e.chain());
                e.exit_code() as u8
            }
        },
        Some(Operator::Agent(a)) => crate::agent::run(crate::agent::Options {
            ovs_db: a.ovs_db,
            nb: a.nb,
            key: a.key,
            state_dir: a.state_dir,
            netns_prefix: a.netns_prefix,
            poll: std::time::Duration::from_millis(a.poll_ms.max(50)),
            grace: std::time::Duration::from_secs(a.grace),
            workers: a.workers,
        }),
        Some(Operator::Generate { what: Generate::Man }) => {
            output::print_text(man_page().trim_end());
            0
        }
        Some(Operator::Generate { what: Generate::Completions { shell } }) => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut args::command(), "cloudstack-ovn", &mut buf);
            output::print_text(String::from_utf8_lossy(&buf).trim_end());
            0
        }
    }
}

/// `cloudstack-ovn --help`.
pub fn help_text() -> String {
    args::command().render_long_help().to_string().trim_end().to_string()
}

/// `cloudstack-ovn --version`.
pub fn version_text() -> String {
    args::command().render_version().trim_end().to_string()
}

/// The man page (roff): the main page, then the options of each operator
/// subcommand.
pub fn man_page() -> String {
    let mut cmd = args::command();
    cmd.build();
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = clap_mangen::Man::new(cmd.clone()).render(&mut out);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && is_operator(s.get_name())) {
        let heading = sub.get_name().to_uppercase();
        let man = clap_mangen::Man::new(sub.clone());
        let mut part = Vec::new();
        let _ = man.render_synopsis_section(&mut part);
        let _ = man.render_description_section(&mut part);
        let _ = man.render_options_section(&mut part);
        // Each render repeats the page preamble (the Aq string); keep the first.
        let part: String = String::from_utf8_lossy(&part)
            .lines()
            .filter(|l| !l.starts_with(".ie \\n(.g") && !l.starts_with(".el .ds Aq"))
            .map(|l| format!("{l}\n"))
            .collect();
        let part = part
            .replace(".SH SYNOPSIS", &format!(".SH \"{heading}\""))
            .replace(".SH DESCRIPTION\n", ".PP\n")
            .replace(".SH OPTIONS", &format!(".SH \"{heading} OPTIONS\""));
        out.extend_from_slice(part.as_bytes());
    }
    // clap_mangen names subcommands as pages of their own
    // ("cloudstack-ovn-doctor(1)"); everything is on this one page.
    let mut page = String::from_utf8_lossy(&out).into_owned();
    for sub in cmd.get_subcommands() {
        let name = sub.get_name().replace('-', "\\-");
        page = page.replace(&format!("cloudstack\\-ovn\\-{name}(1)"), &format!("\\fB{name}\\fR"));
    }
    page
}

/// The operator subcommands documented with their options.
fn is_operator(name: &str) -> bool {
    matches!(name, "extension-details" | "doctor")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        std::iter::once("cloudstack-ovn").chain(v.iter().copied()).map(String::from).collect()
    }

    #[test]
    fn routes_only_operator_words() {
        assert_eq!(route(&argv(&[])), None);
        assert_eq!(route(&argv(&["implement-network", "/tmp/p", "60"])), None);
        assert_eq!(route(&argv(&["no-such-command"])), None);
        assert_eq!(route(&argv(&["doctor", "--no-such-flag"])), Some(EXIT_USAGE));
    }

    #[test]
    fn help_names_every_command_and_man_page_has_operator_options() {
        let help = help_text();
        for c in crate::commands::COMMANDS {
            assert!(help.contains(c.name), "{} missing from --help", c.name);
        }
        assert!(help.contains("extension-details") && help.contains("doctor"));
        assert!(!help.contains("generate"), "generate is hidden");
        let man = man_page();
        assert!(man.contains(".SH \"DOCTOR OPTIONS\""), "{man}");
        assert!(man.contains("\\-\\-timeout"), "{man}");
        assert!(version_text().starts_with("cloudstack-ovn "));
    }
}
