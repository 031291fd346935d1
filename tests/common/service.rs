//! The service binary as a separate process: `churnwatch run` started with a test's
//! settings, its admin address, its metrics, SIGKILL and SIGTERM.
//!
//! The binary is the one cargo built for the tests, or the one `CHURNWATCH_TEST_BIN`
//! names (e.g. `target/release/churnwatch`, to measure a release build with the debug
//! test harness).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The settings of a service on the mock cluster (on top of the defaults): no topic
/// creation (the mock cluster cannot), no ticks, small and frequent commits, a short
/// lag refresh.
pub const MOCK_SETTINGS: &[&str] = &[
    "output.create_topics=false",
    "ticks.interval_ms=0",
    "state.commit_max_records=100",
    "state.commit_interval_ms=100",
    "input.align_wait_ms=10000",
    "metrics.lag_interval_ms=100",
];

/// The churnwatch binary the tests run.
pub fn binary() -> PathBuf {
    std::env::var_os("CHURNWATCH_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_churnwatch")))
}

/// One `churnwatch run` process. Its admin address goes to `<state>.addr`, its log
/// (appended across restarts) to `<state>.log`. Killed when dropped.
pub struct Service {
    /// The process.
    pub child: Child,
    /// Its state directory.
    pub state: PathBuf,
    /// Where it writes its admin address.
    pub port_file: PathBuf,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl Service {
    /// Starts `churnwatch run` on the brokers `bs` with the state directory `state`,
    /// the `--set` settings `sets` and the extra environment `env` (and no
    /// `CHURNWATCH__…` variable of the test's own environment).
    pub fn spawn(bs: &str, state: &Path, sets: &[&str], env: &[(&str, &str)]) -> Service {
        let port_file = state.with_extension("addr");
        let log = state.with_extension("log");
        let _ = std::fs::remove_file(&port_file);
        let mut cmd = Command::new(binary());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CHURNWATCH__") {
                cmd.env_remove(k);
            }
        }
        cmd.args(["run", "--bootstrap-servers", bs])
            .args(["--admin-listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(state);
        for s in sets {
            cmd.args(["--set", s]);
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = cmd
            .env("CHURNWATCH_LOG", "info")
            .env("CHURNWATCH__ADMIN__PORT_FILE", &port_file)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
        Service {
            child,
            state: state.to_path_buf(),
            port_file,
            log,
        }
    }

    /// The admin address, once the process has written it.
    pub fn addr(&mut self) -> String {
        let started = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(&self.port_file) {
                if s.ends_with('\n') {
                    return s.trim().to_string();
                }
            }
            self.assert_running();
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no admin address"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics with the log when the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "churnwatch exited ({status}); its log:\n{}",
                self.log_text()
            );
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let sent = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if sent.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the unlabelled metric `name` at the admin address `addr`.
pub fn metric(addr: &str, name: &str) -> Option<f64> {
    let body = ureq::get(&format!("http://{addr}/metrics"))
        .timeout(Duration::from_secs(5))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits until the service at `addr` owns and has restored `partitions` partitions and
/// reports itself caught up (every one read to its end, committed and delivered),
/// three times in a row.
pub fn wait_caught_up(service: &mut Service, addr: &str, partitions: i32, timeout: Duration) {
    let started = Instant::now();
    let mut stable = 0;
    while stable < 3 {
        service.assert_running();
        assert!(
            started.elapsed() < timeout,
            "not caught up within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
        if metric(addr, "churnwatch_caught_up") == Some(1.0)
            && metric(addr, "churnwatch_partitions_ready") == Some(partitions as f64)
        {
            stable += 1;
        } else {
            stable = 0;
        }
    }
}
