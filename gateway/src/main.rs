//! `switchyard`: the LLM edge gateway binary.
//!
//! `switchyard run --conf FILE` serves; `switchyard check --conf FILE` validates a file and prints
//! the routing table; `migrate` brings a PostgreSQL store's schema up to date (and copies an
//! embedded store in, [`switchyard::store::migrate`]); `keys`, `usage` and `status` talk to a
//! running gateway's admin API ([`switchyard::cli`]). This file owns the command line only; the server is assembled in
//! [`server`].

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard::{config, server};

/// mimalloc instead of glibc's malloc: the ledger's rows (and the spend channel's blocks) are
/// allocated on request threads and freed on the writer thread, a pattern glibc serves through
/// its slow paths and arena locks; mimalloc frees them into the owning page's thread-free list.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "switchyard", version, about = "An LLM edge gateway on Pingora")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. SIGHUP reloads the config file; SIGTERM shuts down gracefully; SIGQUIT
    /// hands the listening sockets to a new instance started with --upgrade.
    Run {
        /// The configuration file (YAML).
        #[arg(long, short = 'c')]
        conf: PathBuf,
        /// Take the listening sockets over from the running instance (zero-downtime binary
        /// upgrade: start the new binary with --upgrade, then send SIGQUIT to the old one).
        #[arg(long, short = 'u')]
        upgrade: bool,
        /// Socket used to hand listening sockets over during an upgrade.
        #[arg(long, default_value = "/tmp/switchyard_upgrade.sock")]
        upgrade_sock: PathBuf,
    },
    /// Validate a configuration file and print its routing table.
    Check {
        /// The configuration file (YAML).
        #[arg(long, short = 'c')]
        conf: PathBuf,
    },
    /// Apply the PostgreSQL schema migrations (`store.kind: postgres`) without serving; with
    /// --from sqlite:PATH, also copy an embedded store's keys and ledger into PostgreSQL.
    Migrate {
        /// The configuration file (YAML).
        #[arg(long, short = 'c', alias = "config")]
        conf: PathBuf,
        /// An embedded store to copy from: sqlite:PATH.
        #[arg(long)]
        from: Option<String>,
    },
    #[command(flatten)]
    Ops(switchyard::cli::Command),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return bad_command_line(&e),
    };
    match cli.command {
        Command::Ops(command) => switchyard::cli::run(command),
        Command::Migrate { conf, from } => match config::load(&conf) {
            Ok(cfg) => match switchyard::store::migrate::command(&cfg, from.as_deref()) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchyard migrate: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("{}: {e}", conf.display());
                }
                ExitCode::FAILURE
            }
        },
        Command::Check { conf } => match config::load(&conf) {
            Ok(cfg) => {
                print!("{}", switchyard::routing::table::routing_table(&cfg));
                println!("{}: OK", conf.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                // Compiler style, `FILE:LINE: path: message`, so editors can jump to each.
                for e in &errors.0 {
                    let at = match e.line {
                        Some(line) => format!("{}:{line}", conf.display()),
                        None => conf.display().to_string(),
                    };
                    match e.path.as_str() {
                        "" => eprintln!("{at}: {}", e.message),
                        path => eprintln!("{at}: {path}: {}", e.message),
                    }
                }
                eprintln!("{}: {} error(s)", conf.display(), errors.0.len());
                ExitCode::FAILURE
            }
        },
        Command::Run {
            conf,
            upgrade,
            upgrade_sock,
        } => {
            env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
                .format_timestamp_millis()
                .init();
            let cfg = match config::load(&conf) {
                Ok(c) => c,
                Err(errors) => {
                    for e in &errors.0 {
                        log::error!("{e}");
                    }
                    eprintln!(
                        "{}: {} error(s); not starting",
                        conf.display(),
                        errors.0.len()
                    );
                    return ExitCode::FAILURE;
                }
            };
            let options = server::RunOptions {
                conf_path: conf,
                upgrade,
                upgrade_sock,
            };
            match server::run(cfg, options) {
                Ok(never) => match never {},
                Err(e) => {
                    eprintln!("switchyard: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `--help` and `--version` print as clap writes them; any other command-line error is one line
/// on stderr (clap's first line, without its usage block) and exit status 2.
fn bad_command_line(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("switchyard: a subcommand is required (see `switchyard --help`)");
            return ExitCode::from(2);
        }
        _ => {}
    }
    // clap's message: paragraphs, then a usage block; keep the paragraphs, on one line.
    let text = e.to_string();
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() {
            paragraphs.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(line);
    }
    paragraphs.extend((!current.is_empty()).then_some(current));
    let mut first = paragraphs
        .first()
        .map(|p| p.strip_prefix("error: ").unwrap_or(p).to_string())
        .unwrap_or_else(|| "invalid command line".into());
    for tip in paragraphs.iter().skip(1) {
        first.push_str(&format!(" ({tip})"));
    }
    eprintln!("switchyard: {first} (see `switchyard --help`)");
    ExitCode::from(2)
}
