//! What the end-to-end benchmarks share: running the release binary as a child and
//! reading its wall time, CPU time and peak RSS, and the median of several runs.
//! Included by `replay_scale` and `backtest_scale` with `#[path]`.

use std::process::Command;
use std::time::Instant;

/// One run of the binary.
pub struct Run {
    /// Wall seconds.
    pub wall: f64,
    /// CPU seconds (user + system) of the child.
    pub cpu: f64,
    /// Peak resident set of the child, KiB.
    pub rss_kib: u64,
}

/// Runs `cmd`, returning its wall time, CPU time and peak RSS; panics with its stderr
/// on failure.
pub fn measure(cmd: &mut Command) -> Run {
    let started = Instant::now();
    // Reaped by `wait4` below, which also reports the child's resource use.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start churnwatch");
    let pid = child.id() as libc::pid_t;
    // Read stderr to its end first (the child exits then), so a full pipe cannot block it.
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(r, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed: {err}"
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Run {
        wall,
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
        rss_kib: usage.ru_maxrss as u64,
    }
}

/// The release binary under measurement.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_churnwatch"))
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
