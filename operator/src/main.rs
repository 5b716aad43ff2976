//! The `bondnet` binary: parse the command line, start tracing, dispatch.

use clap::Parser;

use bondnet::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    bondnet::telemetry::init();
    match cli.command {
        Command::Plan(args) => bondnet::offline::run_plan(
            &args,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )?,
        Command::Crds => bondnet::offline::run_crds(&mut std::io::stdout().lock())?,
    }
    Ok(())
}
