//! `knit`: the peer of a self-healing container mesh, and the client that talks to it.
//!
//! `knit up` runs a peer (creating a cluster, or joining one through a seed); every other
//! command is a client of the local peer's admin API. This crate wires the mesh and the
//! scheduler to the outside world; it holds no protocol or placement logic.

mod agent;
mod api;
mod api_addr;
mod cli;
mod client;
mod clock;
mod cluster;
mod commands;
mod completion;
mod compose;
mod datadir;
mod decoded;
mod discovery;
mod driver;
mod flags;
mod format;
mod ingress;
mod lab;
mod logging;
mod manpage;
mod node_views;
mod notify;
mod peer;
mod persist;
mod records;
mod registry;
mod secrets;
mod tasks;
mod telemetry;
mod version;
mod wire;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Commands about the binary itself need no runtime (and so start fast).
    match &cli.command {
        cli::Command::Version { format } => return exit(version::run(format.as_ref())),
        cli::Command::Completion { shell } => return exit(completion::run(*shell)),
        cli::Command::Man { dir } => return exit(manpage::run(dir)),
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            cli::Command::Up(args) => {
                logging::init(args.log_format);
                peer::up(*args, cli.api.as_deref(), cli.api_insecure).await
            }
            cli::Command::Lab(args) => lab::run(args).await,
            command => {
                client::run(
                    cli.api.as_deref(),
                    cli.tls_dir.as_deref(),
                    cli.api_insecure,
                    command,
                )
                .await
            }
        }
    });
    // Tasks still running (readers, dials) are dropped without waiting.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    exit(result)
}

/// The exit code for `result`, with the error printed.
fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
