//! The `streamgate` binary: parse the command line, start the logs (on
//! stderr, text or JSON), load the config, serve until Ctrl-C or SIGTERM.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use streamgate::Config;
use streamgate::telemetry::LogFormat;

#[derive(Parser)]
#[command(
    name = "streamgate",
    version,
    about = "Socket.IO gateway streaming LLM tokens to IDE frontends"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
    /// Log lines on stderr as text for people, or one JSON object a line.
    #[arg(
        long,
        value_enum,
        env = "STREAMGATE_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the /ai namespace and the ops endpoints (the default).
    Serve(ServeArgs),
}

#[derive(clap::Args, Clone, Default)]
struct ServeArgs {
    /// Config file (TOML); defaults to config/default.toml when it exists.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Port to listen on (overrides config and WS_PORT).
    #[arg(long, short)]
    port: Option<u16>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    streamgate::telemetry::init_logs(cli.log_format);
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    let file = args.config.clone().or_else(|| {
        let default = PathBuf::from("config/default.toml");
        default.exists().then_some(default)
    });
    let mut config = match Config::load(file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("streamgate: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(port) = args.port {
        config.server.port = port;
    }
    let running = match streamgate::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("streamgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %running.addr, "streamgate listening (Socket.IO namespace /ai, ops: /healthz /readyz /stats /metrics)");
    shutdown_signal().await;
    tracing::info!("shutting down");
    match running.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streamgate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
