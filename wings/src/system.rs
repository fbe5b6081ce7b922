//! Host facts for `GET /api/system` (reference §1.4).

use openapi::wings::{HostInformation, SystemInformation};

/// Go's GOARCH name for the running architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

pub fn kernel_version() -> String {
    // SAFETY: uname fills a zeroed struct; release is NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return String::new();
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

pub fn cpu_count() -> i64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1)
}

fn memory_bytes() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn os_pretty_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_default()
}

pub fn information() -> SystemInformation {
    SystemInformation {
        architecture: go_arch().into(),
        cpu_count: cpu_count(),
        kernel_version: kernel_version(),
        os: std::env::consts::OS.into(),
        version: crate::remote::VERSION.into(),
    }
}

pub fn host() -> HostInformation {
    HostInformation {
        architecture: go_arch().into(),
        cpu_threads: cpu_count(),
        memory_bytes: memory_bytes(),
        kernel_version: kernel_version(),
        os: os_pretty_name(),
        os_type: std::env::consts::OS.into(),
    }
}
