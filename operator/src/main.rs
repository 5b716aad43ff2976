//! The `bondnet` binary: parse the command line, start tracing, dispatch, report.

use std::process::ExitCode;

use clap::Parser;

use bondnet::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    bondnet::telemetry::init();
    let result = match cli.command {
        Command::Plan(args) => bondnet::offline::run_plan(
            &args,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        ),
        Command::Crds => bondnet::offline::run_crds(&mut std::io::stdout().lock()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Each error's message already carries its cause.
            eprintln!("bondnet: {err}");
            ExitCode::FAILURE
        }
    }
}
