//! The process's own resource use, for benchmarks: [`memory`] (resident set size now and at its
//! peak, from `/proc/self/status`) and [`cpu_time`] (user + system time of all threads, from
//! `/proc/self/stat`). Linux only; elsewhere both return an `Unsupported` error. The parsers
//! ([`parse_status`], [`parse_stat_cpu_ticks`]) are pure.

use std::io;
use std::time::Duration;

/// Resident memory of the process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct MemoryStats {
    /// Peak resident set size since the process started (`VmHWM`).
    pub peak_rss: u64,
    /// Resident set size now (`VmRSS`).
    pub rss: u64,
    /// Resident anonymous memory now (`RssAnon`): heap and stacks, what the process allocated.
    pub rss_anon: u64,
    /// Resident file-backed memory now (`RssFile`): mapped shards and binaries, which the
    /// kernel can drop at any time.
    pub rss_file: u64,
}

/// Reads the `VmHWM`, `VmRSS`, `RssAnon` and `RssFile` lines of a `/proc/PID/status` text
/// (fields it lacks stay 0).
pub fn parse_status(text: &str) -> MemoryStats {
    let mut m = MemoryStats::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let field = match key {
            "VmHWM" => &mut m.peak_rss,
            "VmRSS" => &mut m.rss,
            "RssAnon" => &mut m.rss_anon,
            "RssFile" => &mut m.rss_file,
            _ => continue,
        };
        // "  123456 kB"
        let kib = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(kib) = kib {
            *field = kib * 1024;
        }
    }
    m
}

/// User + system time in clock ticks from a `/proc/PID/stat` text.
pub fn parse_stat_cpu_ticks(text: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The process's resident memory now and at its peak.
///
/// # Errors
///
/// When `/proc/self/status` cannot be read (not Linux).
pub fn memory() -> io::Result<MemoryStats> {
    if !cfg!(target_os = "linux") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "memory statistics need Linux's /proc",
        ));
    }
    Ok(parse_status(&std::fs::read_to_string("/proc/self/status")?))
}

/// CPU time (user + system) used by all the process's threads so far.
///
/// # Errors
///
/// When `/proc/self/stat` cannot be read or parsed (not Linux).
pub fn cpu_time() -> io::Result<Duration> {
    #[cfg(target_os = "linux")]
    {
        let text = std::fs::read_to_string("/proc/self/stat")?;
        let ticks = parse_stat_cpu_ticks(&text).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/self/stat")
        })?;
        let hz = rustix::param::clock_ticks_per_second().max(1);
        Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
    }
    #[cfg(not(target_os = "linux"))]
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "CPU time needs Linux's /proc",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse_to_bytes() {
        let text = "Name:\tshardfeed\nVmPeak:\t  999 kB\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n\
                    RssAnon:\t   512 kB\nRssFile:\t   256 kB\nThreads:\t4\n";
        assert_eq!(
            parse_status(text),
            MemoryStats {
                peak_rss: 2 << 20,
                rss: 1 << 20,
                rss_anon: 512 << 10,
                rss_file: 256 << 10,
            }
        );
        assert_eq!(parse_status("garbage"), MemoryStats::default());
    }

    #[test]
    fn stat_cpu_ticks_skip_odd_command_names() {
        let text = "4242 (my (odd) prog) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 100";
        assert_eq!(parse_stat_cpu_ticks(text), Some(300));
        assert_eq!(parse_stat_cpu_ticks("4242 (x) R 1"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let m = memory().expect("reads /proc");
        assert!(m.peak_rss >= m.rss && m.rss > 0, "{m:?}");
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(cpu_time().expect("reads /proc") > Duration::ZERO);
    }
}
