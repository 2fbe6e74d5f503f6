//! Server CPU time and RSS from /proc: `/proc/<pid>/stat` (utime + stime) and `/proc/<pid>/status`
//! (VmRSS). For the in-process server, CPU is summed over its runtime's named threads
//! (`/proc/self/task/*/stat`); RSS cannot be split, so it is the whole process, generator included.

use std::fs;
use std::path::Path;

use parking_lot::Mutex;

/// Which process (or threads) the figures describe.
#[derive(Debug, Clone)]
pub enum Subject {
    /// Threads of this process named `thread_name` (CPU); the whole process (RSS).
    InProcess { thread_name: &'static str },
    /// Another process.
    Pid(u32),
}

/// One reading.
#[derive(Debug, Clone, Copy)]
struct Reading {
    cpu_s: f64,
    rss_kb: u64,
}

/// Takes readings of one subject; remembers the first and the peak RSS.
pub struct Probe {
    subject: Subject,
    ticks_per_s: f64,
    first: Option<Reading>,
    peak_rss_kb: Mutex<u64>,
}

impl Probe {
    pub fn new(subject: Subject) -> Self {
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let mut probe = Self {
            subject,
            ticks_per_s: if ticks > 0 { ticks as f64 } else { 100.0 },
            first: None,
            peak_rss_kb: Mutex::new(0),
        };
        probe.first = probe.read();
        probe
    }

    /// How the figures were taken, for the report.
    pub fn describe(&self) -> String {
        match &self.subject {
            Subject::InProcess { thread_name } => format!(
                "in-process server (pid {}): CPU of its runtime threads ({thread_name}); RSS is the \
                 whole process, load generator included",
                std::process::id()
            ),
            Subject::Pid(pid) => format!("server process pid {pid}"),
        }
    }

    fn read(&self) -> Option<Reading> {
        let cpu_s = match &self.subject {
            Subject::InProcess { thread_name } => threads_cpu_ticks(thread_name)?,
            Subject::Pid(pid) => stat_cpu_ticks(&format!("/proc/{pid}/stat"))?.1,
        } as f64
            / self.ticks_per_s;
        let status = match &self.subject {
            Subject::InProcess { .. } => "/proc/self/status".to_string(),
            Subject::Pid(pid) => format!("/proc/{pid}/status"),
        };
        let rss_kb = status_kb(&status, "VmRSS:")?;
        Some(Reading { cpu_s, rss_kb })
    }

    /// Takes a reading to keep the peak RSS up to date.
    pub fn sample(&self) {
        if let Some(reading) = self.read() {
            let mut peak = self.peak_rss_kb.lock();
            *peak = (*peak).max(reading.rss_kb);
        }
    }

    /// CPU seconds since the probe was made; None when /proc could not be read.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.sample();
        let now = self.read()?;
        Some(now.cpu_s - self.first?.cpu_s)
    }

    /// Highest RSS seen in any reading, in MiB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        self.sample();
        let peak = *self.peak_rss_kb.lock();
        (peak > 0).then(|| peak as f64 / 1024.0)
    }
}

/// CPU seconds of this whole process (generator and in-process server together).
pub fn own_process_cpu_seconds() -> Option<f64> {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let (_, cpu) = stat_cpu_ticks("/proc/self/stat")?;
    Some(cpu as f64 / if ticks > 0 { ticks as f64 } else { 100.0 })
}

/// (comm, utime + stime in ticks) from a `stat` file.
fn stat_cpu_ticks(path: &str) -> Option<(String, u64)> {
    let text = fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // After "pid (comm) " the fields start at 3 (state); utime is field 14, stime field 15.
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Sum of utime + stime over this process's threads named `name`.
fn threads_cpu_ticks(name: &str) -> Option<u64> {
    let mut total = 0;
    for task in fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path().join("stat");
        if let Some((comm, ticks)) = path.to_str().and_then(stat_cpu_ticks) {
            if comm == name {
                total += ticks;
            }
        }
    }
    Some(total)
}

/// A `kB` value such as `VmRSS:` from a `status` file.
fn status_kb(path: &str, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().find(|line| line.starts_with(key))?;
    line.get(key.len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The process listening on TCP `port` on this machine (from /proc/net/tcp{,6} and each process's
/// open sockets); None when it cannot be seen (another user's process, or no /proc).
pub fn find_listener(port: u16) -> Option<u32> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .flat_map(|text| listening_inodes(&text, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes
        .iter()
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    for process in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = process.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if holds_socket(&process.path(), &wanted) {
            return Some(pid);
        }
    }
    None
}

/// Inodes of sockets in LISTEN state (0A) on `port` in a /proc/net/tcp table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    let port_hex = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            let listening = *fields.get(3)? == "0A";
            (listening && local_port == port_hex).then(|| fields.get(9).map(|s| s.to_string()))?
        })
        .collect()
}

fn holds_socket(process: &Path, wanted: &[String]) -> bool {
    let Ok(fds) = fs::read_dir(process.join("fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .ok()
            .and_then(|target| target.to_str().map(|t| wanted.iter().any(|w| w == t)))
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_stat_and_status() {
        assert!(stat_cpu_ticks("/proc/self/stat").is_some());
        assert!(status_kb("/proc/self/status", "VmRSS:").is_some_and(|kb| kb > 0));
    }

    #[test]
    fn finds_a_listener_in_a_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:C383 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1\n";
        assert_eq!(listening_inodes(table, 0xC383), vec!["4242".to_string()]);
        assert!(listening_inodes(table, 80).is_empty());
    }

    #[test]
    fn finds_this_process_listening() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert_eq!(find_listener(port), Some(std::process::id()));
    }
}
