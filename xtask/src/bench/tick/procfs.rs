//! What the bench reads about the pool-manager process from `/proc`, and from its `/metrics`:
//! pure parsers (unit-tested) and the reads around them.

use std::collections::BTreeMap;
use std::time::Duration;

use pool_e2e::ManagerProcess;

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

/// A metric's samples over all its labels: (`{…}` as printed, or `""`, value).
pub fn metric_samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = if rest.starts_with('{') {
                let end = rest.find('}')? + 1;
                (&rest[..end], &rest[end..])
            } else {
                ("", rest)
            };
            Some((
                labels.to_string(),
                value.strip_prefix(' ')?.trim().parse::<f64>().ok()?,
            ))
        })
        .collect()
}

/// What the reconciler logs when this replica stops leading (`set_leader(false)`).
pub const LEADERSHIP_LOST: &str = "not the reconciler leader (any more)";

/// The phases of a tick's wall time, as the pool's `tick phases` events name them.
pub const PHASES: [&str; 7] = [
    "load_ms",
    "railway_ms",
    "leader_ms",
    "apply_ms",
    "checks_ms",
    "sizing_ms",
    "upkeep_ms",
];

/// The pool's `tick phases` events (debug, target `pool_reconciler::phases`) in its JSON log
/// lines, in order: each tick's `duration_ms` and [`PHASES`], in milliseconds.
pub fn tick_phases(log: &str) -> Vec<BTreeMap<String, u64>> {
    log.lines()
        .filter(|l| l.contains("\"tick phases\""))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["fields"]["message"] == "tick phases")
        .map(|entry| {
            std::iter::once("duration_ms")
                .chain(PHASES)
                .filter_map(|name| Some((name.to_string(), entry["fields"][name].as_u64()?)))
                .collect()
        })
        .collect()
}

/// Warnings and errors in the pool's JSON log lines, counted by level and message.
pub fn warnings(log: &str) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for line in log
        .lines()
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
    {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let level = entry["level"].as_str().unwrap_or("?").to_lowercase();
        let message = entry["fields"]["message"].as_str().unwrap_or("?");
        *counts.entry(format!("{level} {message:?}")).or_default() += 1;
    }
    counts
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

/// The machine's CPUs (the `cpuN` lines of `/proc/stat`), whatever this process is pinned to
/// (`available_parallelism` counts only those it may run on).
pub fn cpus() -> usize {
    std::fs::read_to_string("/proc/stat")
        .map(|stat| {
            stat.lines()
                .filter(|l| {
                    l.strip_prefix("cpu")
                        .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(1)
}

/// Pins every thread of a process to one CPU (`taskset`); its later threads inherit it. An
/// error without `taskset` or without that CPU.
pub fn pin(pid: u32, cpu: usize) -> Result<(), String> {
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

/// The pool's counters in `/metrics`: ticks, Railway requests (in all, and those that did not
/// answer ok by `operation/outcome`), the last tick.
#[derive(Default)]
pub struct Metrics {
    pub ticks: u64,
    pub railway: u64,
    pub railway_failed: BTreeMap<String, u64>,
    pub wall: Duration,
    pub read: u64,
    pub full_sweep: bool,
    pub problems: u64,
    /// `pool_is_leader`: the replica holds the leader lock.
    pub leader: bool,
}

pub async fn metrics(pm: &ManagerProcess) -> Result<Metrics, String> {
    let answer = pm.get("/metrics", false).await?;
    let text = String::from_utf8_lossy(&answer.body);
    let read = |name: &str| metric(&text, name).unwrap_or(0.0);
    let samples = metric_samples(&text, "railway_requests_total");
    let railway_failed = samples
        .iter()
        .filter(|(labels, _)| !labels.contains("outcome=\"ok\""))
        .map(|(labels, n)| (format!("Railway {labels}"), *n as u64))
        .collect();
    Ok(Metrics {
        ticks: read("pool_ticks_total") as u64,
        railway: samples.iter().map(|(_, n)| n).sum::<f64>() as u64,
        railway_failed,
        wall: Duration::from_secs_f64(read("pool_tick_duration_seconds")),
        read: read("pool_tick_agents_read") as u64,
        full_sweep: read("pool_tick_full_sweep") > 0.0,
        problems: read("pool_tick_problems") as u64,
        leader: read("pool_is_leader") > 0.0,
    })
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
    fn labelled_samples_are_read_by_exact_name() {
        let text = "railway_requests_total{operation=\"a\",outcome=\"ok\"} 3\nrailway_requests_total{operation=\"b\",outcome=\"timeout\"} 4\nrailway_requests_totally 9\n";
        let samples = metric_samples(text, "railway_requests_total");
        assert_eq!(
            samples,
            vec![
                ("{operation=\"a\",outcome=\"ok\"}".to_string(), 3.0),
                ("{operation=\"b\",outcome=\"timeout\"}".to_string(), 4.0),
            ]
        );
    }

    #[test]
    fn warnings_are_counted_by_level_and_message() {
        let log = r#"{"timestamp":"t","level":"WARN","fields":{"message":"tick finished with errors","kind":"tick"}}
{"timestamp":"t","level":"INFO","fields":{"message":"started"}}
not json "WARN"
{"timestamp":"t","level":"WARN","fields":{"message":"tick finished with errors"}}
{"timestamp":"t","level":"ERROR","fields":{"message":"lost"}}"#;
        let counts = warnings(log);
        assert_eq!(counts.get("warn \"tick finished with errors\""), Some(&2));
        assert_eq!(counts.get("error \"lost\""), Some(&1));
        assert_eq!(counts.len(), 2);
    }

    #[test]
    fn tick_phases_are_read_from_their_events_only() {
        let log = r#"{"timestamp":"t","level":"DEBUG","fields":{"message":"tick phases","duration_ms":120,"load_ms":10,"railway_ms":60,"leader_ms":5,"apply_ms":3,"checks_ms":0,"sizing_ms":30,"upkeep_ms":8},"target":"pool_reconciler::phases"}
{"timestamp":"t","level":"WARN","fields":{"message":"not "tick phases""}}
{"timestamp":"t","level":"DEBUG","fields":{"message":"tick phases","duration_ms":7,"load_ms":1},"target":"pool_reconciler::phases"}"#;
        let phases = tick_phases(log);
        assert_eq!(phases.len(), 2);
        assert_eq!(phases[0]["railway_ms"], 60);
        assert_eq!(phases[0].len(), 8);
        assert_eq!(phases[1].get("duration_ms"), Some(&7));
        assert_eq!(phases[1].get("sizing_ms"), None);
    }

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = "# TYPE pool_ticks_total counter\npool_ticks_total 7\npool_tick_duration_seconds 1.25\npool_tick_railway_requests 0\n";
        assert_eq!(metric(text, "pool_ticks_total"), Some(7.0));
        assert_eq!(metric(text, "pool_tick_duration_seconds"), Some(1.25));
        assert_eq!(metric(text, "pool_tick"), None);
    }
}
