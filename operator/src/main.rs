//! The `bondnet` binary: parse the command line, start tracing, dispatch, report.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use bondnet::cli::{AgentArgs, Cli, Command};
use bondnet::Error;

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
        Command::Agent(args) => block_on(agent(args)),
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

fn block_on(future: impl std::future::Future<Output = bondnet::Result<()>>) -> bondnet::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(future)
}

async fn agent(args: AgentArgs) -> bondnet::Result<()> {
    let client = kube::Client::try_default().await.map_err(Error::Client)?;
    let config = bondnet::agent::AgentConfig {
        node_name: args.node_name,
        sysfs_root: args.sysfs_root,
        plugin_source: args.plugin_source,
        cni_bin_dir: args.cni_bin_dir,
        interval: Duration::from_secs(args.interval_seconds),
    };
    bondnet::agent::run(client, config).await
}
