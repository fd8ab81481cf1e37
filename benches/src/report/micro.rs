//! The criterion micro-benchmark medians: [`Micro`] reads the estimates of
//! the last criterion run ([`MICRO_COMMAND`]) from `target/criterion`, a
//! [`MicroFigure`] per benchmark, and renders their table.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::fmt::{cell, fmt_int, fmt_num, utc_minutes, verdict};

/// The command whose results the micro-benchmark table shows.
pub const MICRO_COMMAND: &str = "cargo bench -p flagpost-benches --bench micro";

/// One criterion benchmark's last result.
#[derive(Clone, Debug, PartialEq)]
pub struct MicroFigure {
    /// Its id, e.g. `flags/check_clear`.
    pub id: String,
    /// The median's point estimate, nanoseconds per iteration.
    pub median_ns: f64,
    /// Elements per iteration, when the benchmark declares a throughput.
    pub elements: Option<u64>,
    /// When criterion wrote the estimate.
    pub measured: Option<SystemTime>,
}

/// The criterion results found under a directory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Micro {
    /// The directory read (`target/criterion`).
    pub dir: PathBuf,
    /// Every benchmark found, sorted by id.
    pub figures: Vec<MicroFigure>,
    /// Files that could not be read or parsed, and why.
    pub problems: Vec<String>,
}

impl Micro {
    /// Reads `<dir>/<group>/<function>/new/estimates.json` (and the
    /// benchmark's id and throughput from `new/benchmark.json` beside it)
    /// for every benchmark under `dir`, at any depth up to 4. A missing
    /// directory yields no figures.
    pub fn read(dir: &Path) -> Micro {
        let mut micro = Micro {
            dir: dir.to_owned(),
            ..Micro::default()
        };
        micro.walk(dir, 0);
        micro.figures.sort_by(|a, b| a.id.cmp(&b.id));
        micro
    }

    fn walk(&mut self, dir: &Path, depth: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut subdirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        subdirs.sort();
        for sub in subdirs {
            let name = sub.file_name().map(|n| n.to_string_lossy().into_owned());
            match name.as_deref() {
                Some("new") if sub.join("estimates.json").is_file() => self.read_one(dir, &sub),
                Some("new") => {}
                Some("report" | "base" | "change") => {}
                _ if depth < 4 => self.walk(&sub, depth + 1),
                _ => {}
            }
        }
    }

    fn read_one(&mut self, bench_dir: &Path, new: &Path) {
        let estimates = new.join("estimates.json");
        let parsed = std::fs::read_to_string(&estimates)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()));
        let median_ns = match parsed.map(|v| v["median"]["point_estimate"].as_f64()) {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.problems
                    .push(format!("{}: no median point estimate", estimates.display()));
                return;
            }
            Err(e) => {
                self.problems.push(format!("{}: {e}", estimates.display()));
                return;
            }
        };
        let meta = std::fs::read_to_string(new.join("benchmark.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        let id = meta
            .as_ref()
            .and_then(|m| m["full_id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                bench_dir
                    .strip_prefix(&self.dir)
                    .unwrap_or(bench_dir)
                    .to_string_lossy()
                    .into_owned()
            });
        let elements = meta
            .as_ref()
            .and_then(|m| m["throughput"]["Elements"].as_u64());
        let measured = std::fs::metadata(&estimates)
            .and_then(|m| m.modified())
            .ok();
        self.figures.push(MicroFigure {
            id,
            median_ns,
            elements,
            measured,
        });
    }

    pub(super) fn render(&self, md: &mut String) {
        let _ = writeln!(md, "### Micro-benchmarks (criterion, medians)\n");
        let _ = writeln!(
            md,
            "From the last criterion run (`{MICRO_COMMAND}`) found in `target/criterion`, not measured by this command; the date says when each benchmark last ran (an older date is a benchmark that was not part of the last run, e.g. one since renamed).\n"
        );
        if self.figures.is_empty() {
            let _ = writeln!(
                md,
                "No criterion results were found in `{}`.\n",
                self.dir.display()
            );
        } else {
            let _ = writeln!(
                md,
                "| benchmark | median | per element | measured | target |"
            );
            let _ = writeln!(md, "|---|---:|---:|---|---|");
            for f in &self.figures {
                let per = match f.elements {
                    Some(n) if n > 1 && names_count(&f.id, n) => {
                        format!("{} ({})", fmt_ns(f.median_ns / n as f64), fmt_int(n))
                    }
                    _ => String::new(),
                };
                let when = f.measured.map_or_else(String::new, utc_minutes);
                let target = micro_target(&f.id).map_or_else(String::new, |(bound, text)| {
                    format!("{text} {}", verdict(Some(f.median_ns <= bound)))
                });
                let _ = writeln!(
                    md,
                    "| `{}` | {} | {per} | {when} | {target} |",
                    f.id.replace('`', "'"),
                    fmt_ns(f.median_ns)
                );
            }
            md.push('\n');
        }
        for p in &self.problems {
            let _ = writeln!(md, "- not read: {}", cell(p));
        }
        if !self.problems.is_empty() {
            md.push('\n');
        }
    }
}

/// Whether the benchmark's id names its element count (`fan_out_100_…`):
/// criterion keeps a group's throughput for the group's later benchmarks,
/// so a declared count alone does not say that the benchmark has elements.
/// The issue's target for a micro-benchmark, if it states one: the bound in
/// ns and how to say it. A raise of a clear flag is measured with the take
/// that clears it again, so its bound counts the take too (≤ 5 ns + ≤ 1 ns).
pub(super) fn micro_target(id: &str) -> Option<(f64, &'static str)> {
    match id {
        "flags/check_clear" => Some((1.0, "check when clear ≤ 1 ns")),
        "flags/check_raised" => Some((3.0, "check when raised ≤ 3 ns")),
        "flags/raise_already_raised" => Some((5.0, "raise ≤ 5 ns")),
        "flags/raise_exclusive_clear" => Some((6.0, "raise ≤ 5 ns (+ take ≤ 1 ns)")),
        "notifier/notify_status_update" => Some((100.0, "≥ 10 M calls/s (≤ 100 ns)")),
        _ => None,
    }
}

fn names_count(id: &str, n: u64) -> bool {
    id.split(|c: char| !c.is_ascii_digit())
        .any(|part| part == n.to_string())
}

pub(super) fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{} ms", fmt_num(ns / 1e6))
    } else if ns >= 1e3 {
        format!("{} µs", fmt_num(ns / 1e3))
    } else {
        format!("{} ns", fmt_num(ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_estimates() {
        let dir =
            std::env::temp_dir().join(format!("flagpost-criterion-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let grouped = dir.join("broker/fan_out_100_listeners/new");
        let flat = dir.join("wire_frame_encode/new");
        let broken = dir.join("flags/broken/new");
        for d in [&grouped, &flat, &broken, &dir.join("report")] {
            std::fs::create_dir_all(d).expect("dirs");
        }
        let estimates = |median: f64| {
            format!(r#"{{"mean":{{"point_estimate":1.0}},"median":{{"point_estimate":{median}}}}}"#)
        };
        std::fs::write(grouped.join("estimates.json"), estimates(710.0)).expect("write");
        std::fs::write(
            grouped.join("benchmark.json"),
            r#"{"full_id":"broker/fan_out_100_listeners","throughput":{"Elements":100}}"#,
        )
        .expect("write");
        std::fs::write(flat.join("estimates.json"), estimates(2.8)).expect("write");
        // the group's throughput leaks into a later benchmark of the group
        let leaked = dir.join("broker/handle_datagram_no_listener/new");
        std::fs::create_dir_all(&leaked).expect("dirs");
        std::fs::write(leaked.join("estimates.json"), estimates(30.5)).expect("write");
        std::fs::write(
            leaked.join("benchmark.json"),
            r#"{"full_id":"broker/handle_datagram_no_listener","throughput":{"Elements":10000}}"#,
        )
        .expect("write");
        std::fs::write(broken.join("estimates.json"), "{not json").expect("write");

        let micro = Micro::read(&dir);
        let ids: Vec<&str> = micro.figures.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "broker/fan_out_100_listeners",
                "broker/handle_datagram_no_listener",
                "wire_frame_encode"
            ]
        );
        assert_eq!(micro.figures[0].median_ns, 710.0);
        assert_eq!(micro.figures[0].elements, Some(100));
        assert_eq!(micro.problems.len(), 1, "{:?}", micro.problems);
        let mut md = String::new();
        micro.render(&mut md);
        assert!(
            md.contains("| `broker/fan_out_100_listeners` | 710 ns | 7.10 ns (100) |"),
            "{md}"
        );
        assert!(md.contains("| `wire_frame_encode` | 2.80 ns |  |"), "{md}");
        assert!(
            md.contains("| `broker/handle_datagram_no_listener` | 30.5 ns |  |"),
            "{md}"
        );
        assert!(md.contains(MICRO_COMMAND));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
