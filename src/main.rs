//! The `churnwatch` command line: a thin layer over the library.
//!
//! This file owns the process entry point only: it parses the arguments, sets up
//! tracing, runs the subcommand and renders an error with its causes on stderr (exit
//! code 1). The clap definitions and each subcommand's glue live in [`cli`]; the work
//! itself is the library's.

mod cli;

use clap::Parser;
use std::io::IsTerminal;

/// mimalloc instead of the system allocator: the engine allocates and frees small
/// strings and vectors per record, where glibc's malloc spent a quarter of a replay's
/// CPU (consolidating and zeroing fresh pages) and fragmented the heap. Build with
/// `--no-default-features --features generator` to get the system allocator back, for
/// heap profilers that hook malloc (heaptrack).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cli::Cli::parse();
    init_tracing(&cli.log);
    if let Err(e) = cli::run(cli) {
        eprintln!("error: {}", render(&e));
        std::process::exit(1);
    }
}

/// The error and its causes, skipping a cause whose text the message already holds
/// (the library's errors name their cause in their own message).
fn render(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let m = c.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cause = c.source();
    }
    out
}

/// Logs to stderr: compact lines on a terminal, JSON lines otherwise. `RUST_LOG`, when
/// set and valid, overrides `filter`. The store engine's own logs (fjall, lsm_tree:
/// every open logs its recovery steps at info) show from `warn` on unless the filter
/// names them.
fn init_tracing(filter: &str) {
    let filter = if filter.contains("fjall") || filter.contains("lsm_tree") {
        filter.to_string()
    } else {
        format!("{filter},fjall=warn,lsm_tree=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.compact().init();
    } else {
        builder.json().init();
    }
}
