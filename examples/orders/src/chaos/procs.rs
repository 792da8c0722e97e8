//! The processes the chaos harness runs and breaks: the services' workers
//! (each an `eddy-orders run` process) and the brokers of the cluster.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How a worker is started again and again.
pub(super) struct WorkerSpec {
    /// `payment`, `inventory` or `order-saga`.
    pub(super) service: &'static str,
    pub(super) index: usize,
    pub(super) config: PathBuf,
    pub(super) state_dir: PathBuf,
    pub(super) log: PathBuf,
    /// Arguments shared by every worker: brokers, suffix, guarantee...
    pub(super) common: Vec<String>,
    /// Environment variables set for every worker (the masking key).
    pub(super) env: Vec<(String, String)>,
}

/// A worker process of one service.
pub(super) struct Worker {
    pub(super) spec: WorkerSpec,
    child: Option<Child>,
    pub(super) http: SocketAddr,
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Worker {
    pub(super) fn start(spec: WorkerSpec) -> anyhow::Result<Worker> {
        let mut w = Worker {
            spec,
            child: None,
            http: free_port()?,
        };
        w.spawn()?;
        Ok(w)
    }

    pub(super) fn name(&self) -> String {
        format!("{}-{}", self.spec.service, self.spec.index)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .with_context(|| format!("opening {}", self.spec.log.display()))?;
        self.http = free_port()?;
        let child = Command::new(std::env::current_exe()?)
            .arg("run")
            .arg("--config")
            .arg(&self.spec.config)
            .arg("--state-dir")
            .arg(&self.spec.state_dir)
            .args(["--http", &self.http.to_string()])
            .args(&self.spec.common)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting a worker")?;
        self.child = Some(child);
        Ok(())
    }

    /// The last `lines` lines of the worker's log.
    pub(super) fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.spec.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then (once reaped) a new process, on an empty state
    /// directory if `wipe`.
    pub(super) fn kill_and_restart(&mut self, wipe: bool, pause: Duration) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        if wipe {
            let _ = fs::remove_dir_all(&self.spec.state_dir);
        }
        std::thread::sleep(pause);
        self.spawn()
    }

    /// Whether the process is still running (not exited).
    pub(super) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The sum of a metric's samples on the worker's `/metrics` (`None`
    /// while it does not answer).
    pub(super) fn metric(&self, name: &str) -> Option<i64> {
        let mut s = TcpStream::connect_timeout(&self.http, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let sum = text
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        Some(sum as i64)
    }

    /// SIGTERM, without waiting (see [`stop`](Self::stop)).
    pub(super) fn terminate(&self) {
        if let Some(pid) = self.pid() {
            let _ = signal(pid, "TERM");
        }
    }

    /// SIGTERM, and waits (up to `timeout`) for a clean stop.
    pub(super) fn stop(&mut self, timeout: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }
}

impl Drop for Worker {
    /// A run that fails leaves no worker behind.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends `signal` (`STOP`, `CONT`) to process `pid`.
pub(super) fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed");
    }
    Ok(())
}

/// A broker of the cluster started by `scripts/kafka/start.sh`, found by
/// the pid file in its node directory.
pub(super) struct Broker {
    node_dir: PathBuf,
    port: u16,
}

impl Broker {
    /// Node `id` of the cluster in `cluster_dir` (its broker at `port`).
    pub(super) fn new(cluster_dir: &Path, id: u32, port: u16) -> Broker {
        Broker {
            node_dir: cluster_dir.join(format!("node-{id}")),
            port,
        }
    }

    /// SIGKILLs the broker, waits `down`, and starts it again with the same
    /// command line (in its own session, like the start script, writing
    /// its pid file); returns once it accepts connections.
    pub(super) fn kill_and_restart(&self, down: Duration) -> anyhow::Result<()> {
        let pid_file = self.node_dir.join("kafka.pid");
        let pid: u32 = fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?
            .trim()
            .parse()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))?;
        let argv: Vec<String> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let cwd = fs::read_link(format!("/proc/{pid}/cwd"))?;
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        while Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(down);
        let out = self.node_dir.join("logs").join("kafka.out");
        let log = OpenOptions::new().create(true).append(true).open(&out)?;
        let child = Command::new("setsid")
            .args(&argv)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("restarting the broker")?;
        fs::write(&pid_file, child.id().to_string())?;
        // The broker outlives the harness, as started by the script.
        std::mem::forget(child);
        // A killed broker recovers its logs first: minutes on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(600);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!("the restarted broker did not listen on {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }
}

/// Creates the log file's folder and the file.
pub(super) fn log_file(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.log"));
    File::create(&path)?;
    Ok(path)
}
