//! Process metrics by the Prometheus conventions (`process_*`): CPU time,
//! resident and virtual memory, open and maximum file descriptors and the
//! start time, read from `/proc/self` on Linux. Other systems get none of
//! them (the page just leaves them out).

use prometheus_client::registry::Registry;

/// Adds the `process_*` metrics to `registry` where the system reports
/// them (Linux); elsewhere, or if `/proc` cannot be read, adds nothing.
pub(crate) fn register(registry: &mut Registry) {
    #[cfg(target_os = "linux")]
    if let Some(p) = linux::read() {
        p.register(registry);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
}

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::atomic::AtomicU64;

    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::{Registry, Unit};

    /// One reading of `/proc/self`.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub(super) struct Process {
        pub(super) cpu_seconds: f64,
        pub(super) resident_bytes: u64,
        pub(super) virtual_bytes: u64,
        pub(super) start_time_seconds: f64,
        pub(super) open_fds: u64,
        pub(super) max_fds: Option<u64>,
    }

    impl Process {
        pub(super) fn register(&self, registry: &mut Registry) {
            let cpu = Counter::<f64, AtomicU64>::default();
            cpu.inc_by(self.cpu_seconds);
            registry.register_with_unit(
                "process_cpu",
                "Total user and system CPU time spent",
                Unit::Seconds,
                cpu,
            );
            let gauge = |v: u64| {
                let g = Gauge::<u64, AtomicU64>::default();
                g.set(v);
                g
            };
            registry.register_with_unit(
                "process_resident_memory",
                "Resident memory size",
                Unit::Bytes,
                gauge(self.resident_bytes),
            );
            registry.register_with_unit(
                "process_virtual_memory",
                "Virtual memory size",
                Unit::Bytes,
                gauge(self.virtual_bytes),
            );
            let start = Gauge::<f64, AtomicU64>::default();
            start.set(self.start_time_seconds);
            registry.register_with_unit(
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Unit::Seconds,
                start,
            );
            registry.register(
                "process_open_fds",
                "Open file descriptors",
                gauge(self.open_fds),
            );
            if let Some(max) = self.max_fds {
                registry.register(
                    "process_max_fds",
                    "Maximum number of open file descriptors (soft limit)",
                    gauge(max),
                );
            }
        }
    }

    /// Reads the process's figures, or `None` if `/proc` is unreadable.
    pub(super) fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let tick = sysconf(nix::unistd::SysconfVar::CLK_TCK)?;
        let page = sysconf(nix::unistd::SysconfVar::PAGE_SIZE)?;
        let mut p = parse(&stat, &boot, tick, page)?;
        // the directory's own descriptor, open while it is read, is not one
        // of the process's
        p.open_fds = open_fds.saturating_sub(1);
        p.max_fds = max_fds(&limits);
        Some(p)
    }

    fn sysconf(var: nix::unistd::SysconfVar) -> Option<u64> {
        let v = nix::unistd::sysconf(var).ok()??;
        u64::try_from(v).ok().filter(|&v| v > 0)
    }

    /// Parses `/proc/self/stat` (fields after the command name, which may
    /// hold spaces and parentheses) and `/proc/stat`'s `btime`.
    pub(super) fn parse(stat: &str, proc_stat: &str, tick: u64, page: u64) -> Option<Process> {
        let rest = &stat[stat.rfind(')')? + 1..];
        // after the name: state is field 3; utime 14, stime 15, starttime
        // 22, vsize 23, rss 24 (proc(5), 1-based)
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let btime = proc_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse::<u64>()
            .ok()?;
        let tick = tick as f64;
        Some(Process {
            cpu_seconds: (field(14)? + field(15)?) as f64 / tick,
            virtual_bytes: field(23)?,
            resident_bytes: field(24)?.saturating_mul(page),
            start_time_seconds: btime as f64 + field(22)? as f64 / tick,
            open_fds: 0,
            max_fds: None,
        })
    }

    /// The soft limit of `Max open files` in `/proc/self/limits`.
    pub(super) fn max_fds(limits: &str) -> Option<u64> {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn stat_lines_parse_whatever_the_command_name() {
            let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                        250 50 0 0 20 0 3 0 1000 123456789 321 18446744073709551615";
            let p = parse(stat, "cpu 1 2 3\nbtime 1700000000\n", 100, 4096).unwrap();
            assert_eq!(p.cpu_seconds, 3.0);
            assert_eq!(p.start_time_seconds, 1_700_000_010.0);
            assert_eq!(
                (p.virtual_bytes, p.resident_bytes),
                (123_456_789, 321 * 4096)
            );
            assert_eq!(parse("garbage", "btime 1", 100, 4096), None);
        }

        #[test]
        fn the_soft_fd_limit_is_read() {
            let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                          Max open files            1024                 524288               files\n";
            assert_eq!(max_fds(limits), Some(1024));
            assert_eq!(max_fds(""), None);
        }

        #[test]
        fn this_process_is_read() {
            let p = read().unwrap();
            assert!(p.open_fds >= 3 && p.resident_bytes > 0, "{p:?}");
            assert!(p.start_time_seconds > 1.5e9, "{p:?}");
        }
    }
}
