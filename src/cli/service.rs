//! `churnwatch run`: the Kafka service from the command line. Builds the service config
//! from the file, the environment and the flags, starts the service and turns SIGTERM or
//! SIGINT into a bounded drain.
//!
//! May touch stdout (`--print-config`), the process environment (read only) and signal
//! handling, and exits the process on a second signal or an overlong drain; the service
//! itself is the library's.

use super::{load_policy_and_model, RunArgs, LOG_TARGET};
use anyhow::Result;
use churnwatch::edge::kafka::config::Config as ServiceConfig;

/// The service config: defaults, the file, the environment, `--set` and the shorthands.
fn service_config(a: &RunArgs) -> Result<ServiceConfig> {
    let mut sets = a.sets.clone();
    if let Some(b) = &a.bootstrap_servers {
        sets.push(format!("kafka.bootstrap_servers={b}"));
    }
    if let Some(d) = &a.state_dir {
        sets.push(format!("state.dir={}", d.display()));
    }
    if let Some(l) = &a.admin_listen {
        sets.push(format!("admin.listen={l}"));
    }
    Ok(ServiceConfig::load(
        a.config.as_deref(),
        std::env::vars(),
        &sets,
    )?)
}

/// Runs `churnwatch run`.
pub fn run(a: RunArgs) -> Result<()> {
    let cfg = service_config(&a)?;
    if a.print_config {
        print!("{}", cfg.redacted().to_toml());
        return Ok(());
    }
    let policy = load_policy_and_model(cfg.policy.as_deref(), cfg.model.as_deref())?;
    let drain = std::time::Duration::from_millis(cfg.shutdown.drain_timeout_ms);
    no_transparent_huge_pages();
    let running = churnwatch::edge::kafka::start(cfg, policy)?;
    running
        .handle()
        .spawn(on_signals(running.shutdown_token(), drain));
    let summary = running.wait()?;
    tracing::info!(target: LOG_TARGET, processed = summary.processed, "stopped");
    Ok(())
}

/// Turns transparent huge pages off for this process. The service allocates and frees
/// in bursts of a commit each: with huge pages the allocator's memory returned between
/// commits comes back as fresh 2 MiB pages the kernel zeroes whole, which took ~17% of
/// the service's CPU over a backlog (perf, `benches/kafka_e2e.rs`); without, ~1%.
fn no_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        tracing::debug!(
            target: LOG_TARGET,
            error = %std::io::Error::last_os_error(),
            "cannot turn transparent huge pages off"
        );
    }
}

/// First SIGTERM/SIGINT: drain (bounded); a second one, or a drain past its bound,
/// exits at once.
async fn on_signals(token: tokio_util::sync::CancellationToken, drain: std::time::Duration) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!(
            target: LOG_TARGET,
            "cannot install signal handlers; stop with SIGKILL"
        );
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!(
        target: LOG_TARGET,
        drain_ms = drain.as_millis() as u64,
        "signal received: draining; a second signal exits at once"
    );
    token.cancel();
    tokio::select! {
        _ = term.recv() => tracing::warn!(
            target: LOG_TARGET,
            "second signal: exiting without finishing the drain"
        ),
        _ = int.recv() => tracing::warn!(
            target: LOG_TARGET,
            "second signal: exiting without finishing the drain"
        ),
        _ = tokio::time::sleep(drain + std::time::Duration::from_secs(5)) => {
            tracing::error!(target: LOG_TARGET, "the drain took longer than its bound; exiting");
        }
    }
    std::process::exit(130);
}
