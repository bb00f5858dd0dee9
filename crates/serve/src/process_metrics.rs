//! The `process_*` series `prometheus_client`'s `ProcessCollector` writes (vLLM shows them by
//! default), read from `/proc/self` as that collector reads them: CPU seconds (user + system),
//! virtual and resident memory in bytes, the start time in Unix seconds, open file descriptors
//! and the soft open-file limit. Where `/proc` cannot be read (not Linux) nothing is written,
//! as the collector writes nothing there.

use crate::metrics::go_float;
use std::fmt::Write;

/// What `/proc/self` says about this process.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessStats {
    pub virtual_memory_bytes: f64,
    pub resident_memory_bytes: f64,
    pub start_time_seconds: f64,
    pub cpu_seconds_total: f64,
    pub open_fds: f64,
    pub max_fds: f64,
}

/// Fields of `/proc/self/stat` after the command name, counted from `state` (field 3) as 0.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// Reads the figures; `None` where `/proc/self` is not there.
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let f = stat_fields(&stat)?;
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    let ticks = if ticks > 0.0 { ticks } else { 100.0 };
    // Fields (man 5 proc), 1-based: utime 14, stime 15, starttime 22, vsize 23, rss 24;
    // here 0-based from field 3.
    let (utime, stime) = (num(11)?, num(12)?);
    let (starttime, vsize, rss) = (num(19)?, num(20)?, num(21)?);
    let btime = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    Some(ProcessStats {
        virtual_memory_bytes: vsize,
        resident_memory_bytes: rss * page,
        start_time_seconds: btime + starttime / ticks,
        cpu_seconds_total: (utime + stime) / ticks,
        open_fds,
        max_fds,
    })
}

/// Appends the `process_*` families, in the collector's order.
pub fn render(out: &mut String) {
    let Some(p) = read() else {
        return;
    };
    let families = [
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            p.virtual_memory_bytes,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            p.resident_memory_bytes,
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
            p.start_time_seconds,
        ),
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            p.cpu_seconds_total,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            p.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            "gauge",
            p.max_fds,
        ),
    ];
    for (name, help, kind, v) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {}", go_float(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_skip_a_command_name_with_spaces_and_parentheses() {
        let f = stat_fields("42 (a (b) c) S 1 2 3").unwrap();
        assert_eq!(f, vec!["S", "1", "2", "3"]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_plausibly() {
        let p = read().expect("/proc/self readable on Linux");
        assert!(p.resident_memory_bytes > 0.0);
        assert!(p.virtual_memory_bytes >= p.resident_memory_bytes);
        assert!(p.open_fds >= 3.0, "stdin/stdout/stderr at least");
        assert!(p.max_fds >= p.open_fds);
        let now = crate::metrics::unix_now_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86_400.0 * 365.0);
    }
}
