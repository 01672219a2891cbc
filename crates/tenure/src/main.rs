//! `tenure`: the one binary. `main` parses the command line, runs the
//! command and prints the error; everything else lives in the modules.

mod bench;
mod certs;
mod changes;
mod chaos;
mod check;
mod cli;
mod cluster;
mod demo;
mod error;
mod lock;
mod logs;
mod reasons;
mod serve;
mod sim;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::init_logging(cli.log_format, cli.quiet());
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`tenure demo | head`) is the reader's choice, not a failure.
        Err(error::Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tenure: {e}");
            ExitCode::FAILURE
        }
    }
}
