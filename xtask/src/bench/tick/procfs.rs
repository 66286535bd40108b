//! What the bench reads about the pool-manager process from `/proc`, and from its `/metrics`:
//! pure parsers (unit-tested) and the reads around them.

use std::time::Duration;

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat`: Linux reports them in
/// `USER_HZ`, which is 100 on every architecture it runs on (`sysconf(_SC_CLK_TCK)`).
const USER_HZ: u64 = 100;

/// A `kB` field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`, …), in KiB.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let value = rest.trim().strip_suffix("kB")?.trim();
        value.parse().ok()
    })
}

/// `utime + stime` of `/proc/<pid>/stat`, in clock ticks (all threads of the process). The
/// command name (field 2) is in parentheses and may itself hold spaces and parentheses, so
/// fields are counted from the last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state (field 3) … utime (14), stime (15).
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// A sample's value in Prometheus' text format: the line `name value` (no labels).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// The sum of a metric's samples over all its labels (`name{…} value` lines).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                &rest[rest.find('}')? + 1..]
            } else {
                rest
            };
            value.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .sum()
}

/// The machine's CPU time from `/proc/stat`: busy (every CPU, all but idle, iowait and
/// steal) and steal (time the hypervisor gave to other guests).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub busy: Duration,
    pub steal: Duration,
}

/// Parses the `cpu ` line of `/proc/stat`.
pub fn cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal …
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    let ticks = |t: u64| Duration::from_millis(t * 1000 / USER_HZ);
    Some(CpuTimes {
        busy: ticks(busy),
        steal: ticks(at(7)),
    })
}

/// Reads `/proc/stat`.
pub fn machine() -> Result<CpuTimes, String> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    cpu_times(&stat).ok_or_else(|| "/proc/stat has no cpu line".into())
}

/// The 1-minute load average, as `uptime` prints it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Resets the process's peak resident set (`VmHWM`) to its current one (Linux ≥ 4.0).
pub fn clear_peak(pid: u32) -> Result<(), String> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, "5").map_err(|e| format!("{path}: {e}"))
}

/// Pins every thread of a process to one CPU (`taskset`); its later threads inherit it. An
/// error on a machine with fewer than two CPUs or without `taskset`.
pub fn pin(pid: u32, cpu: usize) -> Result<(), String> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return Err("fewer than two CPUs".into());
    }
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("taskset: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("taskset failed ({status})"))
    }
}

/// Peak resident memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmHWM`: the peak resident set since the process started.
    pub peak_kib: u64,
}

/// Reads `/proc/<pid>/status`.
pub fn memory(pid: u32) -> Result<Memory, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let field = |name: &str| status_kib(&status, name).ok_or_else(|| format!("{path} has no {name}"));
    Ok(Memory {
        peak_kib: field("VmHWM")?,
    })
}

/// CPU time the process has used so far (user + system, all threads).
pub fn cpu(pid: u32) -> Result<Duration, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let ticks = cpu_ticks(&stat).ok_or_else(|| format!("{path}: no utime/stime in {stat:?}"))?;
    Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_and_current_memory_are_read_from_status() {
        let status = "Name:\tpool-manager\nVmPeak:\t  812345 kB\nVmHWM:\t   41236 kB\nVmRSS:\t   38000 kB\nThreads:\t5\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(41_236));
        assert_eq!(status_kib(status, "VmRSS"), Some(38_000));
        assert_eq!(status_kib(status, "VmSwap"), None);
        assert_eq!(
            status_kib("VmHWMx:\t1 kB\n", "VmHWM"),
            None,
            "the whole field name"
        );
    }

    #[test]
    fn cpu_time_is_counted_after_the_command_name() {
        // Fields 14 and 15 (utime, stime) are 250 and 50; the name holds ") (" to mislead.
        let stat =
            "4242 (pool (mgr) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 50 0 0 20 0 5 0 123 456 789";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks("4242 (truncated) S 1"), None);
    }

    #[test]
    fn machine_cpu_counts_busy_and_steal_apart() {
        let stat = "cpu  100 10 50 1000 20 5 5 30 0 0\ncpu0 50 5 25 500 10 2 3 15 0 0\n";
        let t = cpu_times(stat).unwrap();
        assert_eq!(t.busy, Duration::from_millis(1700));
        assert_eq!(t.steal, Duration::from_millis(300));
    }

    #[test]
    fn labelled_samples_are_summed() {
        let text = "railway_requests_total{operation=\"a\",outcome=\"ok\"} 3\nrailway_requests_total{operation=\"b\",outcome=\"ok\"} 4\nrailway_requests_totally 9\n";
        assert_eq!(metric_sum(text, "railway_requests_total"), 7.0);
    }

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = "# TYPE pool_ticks_total counter\npool_ticks_total 7\npool_tick_duration_seconds 1.25\npool_tick_railway_requests 0\n";
        assert_eq!(metric(text, "pool_ticks_total"), Some(7.0));
        assert_eq!(metric(text, "pool_tick_duration_seconds"), Some(1.25));
        assert_eq!(metric(text, "pool_tick"), None);
    }
}
