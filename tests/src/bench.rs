//! What the benchmark binaries share: flags, the peak resident set and the CPU time used.

use anyhow::Context;

/// The value of `--name VALUE`, if the flag is given.
pub fn text_arg(name: &str) -> anyhow::Result<Option<String>> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .cloned()
            .map(Some)
            .with_context(|| format!("{name} needs a value")),
    }
}

/// The whole-number value of `--name N`, or `default`.
pub fn arg(name: &str, default: i64) -> anyhow::Result<i64> {
    match text_arg(name)? {
        None => Ok(default),
        Some(v) => v
            .parse()
            .with_context(|| format!("{name} must be a whole number")),
    }
}

/// Resets the peak resident set so that a later [`peak_rss_mib`] covers what follows (Linux).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set (VmHWM) in MiB, when the platform tells.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Prints the peak resident set line of a benchmark report.
pub fn print_peak_rss() {
    match peak_rss_mib() {
        Some(mib) => println!("peak RSS:        {mib:.0} MiB"),
        None => println!("peak RSS:        unknown (no /proc/self/status)"),
    }
}

/// CPU seconds (user + system, all threads) this process has used, when the platform tells
/// (Linux: `/proc/self/stat`, in ticks of 1/100 s). Less disturbed than the wall clock by
/// whatever else the machine runs, so it is what to compare two builds by.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
