//! The `bondnet` binary: parse the command line, start tracing, dispatch, report.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use bondnet::cli::{AgentArgs, Cli, Command, ControllerArgs, WebhookArgs};
use bondnet::Error;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = bondnet::telemetry::init().and_then(|()| run(cli.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Each error's message already carries its cause.
            eprintln!("bondnet: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> bondnet::Result<()> {
    match command {
        Command::Plan(args) => bondnet::offline::run_plan(
            &args,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        ),
        Command::Crds => bondnet::offline::run_crds(&mut std::io::stdout().lock()),
        Command::Agent(args) => block_on(agent(args)),
        Command::Controller(args) => block_on(controller(args)),
        Command::Webhook(args) => block_on(webhook(args)),
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
        device_plugin: args.device_plugin_config_file.map(|config_file| {
            bondnet::agent::DevicePluginOutput {
                config_file,
                restart: args.device_plugin_selector.map(|selector| {
                    bondnet::agent::DevicePluginPods {
                        namespace: args.device_plugin_namespace,
                        selector,
                    }
                }),
            }
        }),
        node_name: args.node_name,
        sysfs_root: args.sysfs_root,
        plugin_source: args.plugin_source,
        cni_bin_dir: args.cni_bin_dir,
        interval: Duration::from_secs(args.interval_seconds),
    };
    bondnet::agent::run(client, config).await
}

async fn controller(args: ControllerArgs) -> bondnet::Result<()> {
    // Every response has a deadline: lists the read timeout, watches a shorter one of their own.
    let mut kube_config = kube::Config::infer()
        .await
        .map_err(|e| Error::Client(kube::Error::InferConfig(e)))?;
    kube_config.read_timeout = Some(bondnet::controller::READ_TIMEOUT);
    kube_config.reset_reader_on_write = true;
    let client = kube::Client::try_from(kube_config).map_err(Error::Client)?;
    if let Some(shards) = args.device_plugin_shards {
        tracing::warn!(
            shards,
            "--device-plugin-shards is deprecated and ignored: the ConfigMap export is sharded by size"
        );
    }
    let config = bondnet::controller::Config {
        settings: args.device_plugin.settings(),
        export_configmap: args.device_plugin_configmap_export,
        lease: bondnet::controller::lease::LeaseConfig::with_defaults(
            args.lease_namespace,
            args.lease_name,
            args.identity,
        )
        .with_timing(
            Duration::from_secs(args.lease_duration_seconds),
            Duration::from_secs(args.lease_renew_deadline_seconds),
        )?,
        metrics_address: args.metrics_address,
    };
    bondnet::controller::run(client, config).await
}

/// `bondnet webhook`.
async fn webhook(args: WebhookArgs) -> bondnet::Result<()> {
    use bondnet::webhook::{tls, Config, NotReadyPolicy};
    let tls = match (args.tls_cert_file, args.tls_key_file) {
        (Some(cert), Some(key)) => tls::TlsSource::Files { cert, key },
        _ => tls::TlsSource::Managed(tls::ManagedTls {
            dns_names: tls::service_dns_names(&args.service, &args.namespace),
            namespace: args.namespace,
            secret: args.tls_secret,
            webhook_configuration: Some(args.webhook_configuration).filter(|n| !n.is_empty()),
        }),
    };
    let config = Config {
        listen: args.listen,
        not_ready: if args.allow_not_ready {
            NotReadyPolicy::Allow
        } else {
            NotReadyPolicy::Deny
        },
        tls,
        cert_check_interval: Duration::from_secs(args.cert_check_seconds),
        metrics_listen: args.metrics_address,
        limits: bondnet::webhook::server::Limits {
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
            ..Default::default()
        },
    };
    let client = kube::Client::try_default().await.map_err(Error::Client)?;
    bondnet::webhook::run(client, config).await
}
