//! `switchyard`: the LLM edge gateway binary.
//!
//! `switchyard run --conf FILE` serves; `switchyard check --conf FILE` validates a file and prints
//! the routing table. This file owns the command line only; the server is assembled in
//! [`server`].

mod access_log;
mod admin;
mod config;
mod context;
mod errors;
mod forward;
mod mock;
mod proxy;
mod router;
mod server;
mod state;
mod telemetry;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "switchyard", version, about = "An LLM edge gateway on Pingora")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The configuration file (YAML).
        #[arg(long, short = 'c')]
        conf: PathBuf,
    },
    /// Validate a configuration file and print its routing table.
    Check {
        /// The configuration file (YAML).
        #[arg(long, short = 'c')]
        conf: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { conf } => match config::load(&conf) {
            Ok(cfg) => {
                print!("{}", server::routing_table(&cfg));
                println!("{}: OK", conf.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("{e}");
                }
                eprintln!("{}: {} error(s)", conf.display(), errors.0.len());
                ExitCode::FAILURE
            }
        },
        Command::Run { conf } => {
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
            match server::run(cfg) {
                Ok(never) => match never {},
                Err(e) => {
                    eprintln!("switchyard: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
