//! A process's resident memory, as the kernel reports it in `/proc/<pid>/status`.

use anyhow::{Context, Result};

/// Resident set now (`VmRSS`) and its high-water mark since start (`VmHWM`), in KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn memory(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_status(&status)
}

pub fn parse_status(status: &str) -> Result<Memory> {
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc status"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// CPU seconds (user + system) a process has used, and those of its reaped children.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cpu {
    pub own: f64,
    pub children: f64,
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Fields of `/proc/<pid>/stat` after the command name (field 3 = index 0).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let close = stat.rfind(')')?;
    Some(stat[close + 1..].split_whitespace().collect())
}

pub fn parse_stat_cpu(stat: &str, hz: f64) -> Option<(Cpu, u32)> {
    let f = stat_fields(stat)?;
    let n = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    Some((
        Cpu {
            own: (n(14)? + n(15)?) as f64 / hz,
            children: (n(16)? + n(17)?) as f64 / hz,
        },
        n(4)? as u32,
    ))
}

pub fn cpu(pid: u32) -> Result<Cpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    Ok(parse_stat_cpu(&stat, ticks_per_sec())
        .context("parsing /proc stat")?
        .0)
}

/// CPU seconds of `root`, its live direct children and its reaped ones (a postmaster,
/// its backends, and the backends of connections already closed).
pub fn family_cpu(root: u32) -> f64 {
    let hz = ticks_per_sec();
    let mut total = 0.0;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            if let Some((c, ppid)) = parse_stat_cpu(&stat, hz) {
                if pid == root {
                    total += c.own + c.children;
                } else if ppid == root {
                    total += c.own;
                }
            }
        }
    }
    total
}

/// Busy CPU seconds of the whole machine (all cores) from `/proc/stat`.
pub fn machine_busy() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: busy = all but idle and iowait.
    let busy: u64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, x)| x)
        .sum();
    Ok(busy as f64 / ticks_per_sec())
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_high_water_mark() {
        let s =
            "Name:\tpanel-api\nVmPeak:\t  900000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(
            parse_status(s).unwrap(),
            Memory {
                rss_kib: 10240,
                hwm_kib: 20480
            }
        );
        assert!(parse_status("Name:\tx\n").is_err());
    }

    #[test]
    fn reads_cpu_times_and_parent_past_a_command_name_with_spaces() {
        let stat = "42 (tokio-rt (x)) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 4 0";
        let (c, ppid) = parse_stat_cpu(stat, 100.0).unwrap();
        assert_eq!(ppid, 7);
        assert_eq!(
            c,
            Cpu {
                own: 3.0,
                children: 0.5
            }
        );
    }

    #[test]
    fn reads_this_process() {
        let m = memory(std::process::id()).unwrap();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
    }
}
