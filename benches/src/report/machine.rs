//! The machine and build a run was made on ([`Machine`], the generated
//! section's first table), with the command line that produced the report
//! ([`command_line`]).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use super::fmt::{cell, utc_minutes};

/// The description of the machine and build a run was made on, as rows of
/// (what, value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// (what, value) rows, in order.
    pub rows: Vec<(String, String)>,
}

impl Machine {
    /// Describes this machine: CPU model and count (`/proc/cpuinfo`),
    /// memory (`MemTotal`), kernel, OS (`PRETTY_NAME`), `rustc -V`, the
    /// build profile, the git commit of the source tree this binary was
    /// built from (and whether it has uncommitted changes), the date in UTC
    /// and `command`, the command line that produced the report. What
    /// cannot be found reads `unknown`.
    pub fn describe(command: &str) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let count = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
            .count();
        let count = if count > 0 {
            count
        } else {
            std::thread::available_parallelism().map_or(0, usize::from)
        };
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines().find_map(|l| {
                    let kib: f64 = l
                        .strip_prefix("MemTotal:")?
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse()
                        .ok()?;
                    Some(format!("{:.1} GiB", kib / 1024.0 / 1024.0))
                })
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| run_line("uname", &["-r"], None))
            .map_or_else(
                || "unknown".into(),
                |release| {
                    let os = std::fs::read_to_string("/proc/sys/kernel/ostype")
                        .map(|s| s.trim().to_owned())
                        .unwrap_or_else(|_| std::env::consts::OS.to_owned());
                    format!("{os} {release}")
                },
            );
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let v = l.strip_prefix("PRETTY_NAME=")?;
                    Some(v.trim().trim_matches('"').to_owned())
                })
            })
            .unwrap_or_else(|| "unknown".into());
        let rustc = run_line("rustc", &["-V"], None).unwrap_or_else(|| "unknown".into());
        let profile = if cfg!(debug_assertions) {
            "debug (unoptimised: figures not comparable with a release run)"
        } else {
            "release"
        };
        let source = Path::new(env!("CARGO_MANIFEST_DIR"));
        let commit = match run_line("git", &["rev-parse", "--short", "HEAD"], Some(source)) {
            Some(hash) => {
                let dirty = Command::new("git")
                    .arg("-C")
                    .arg(source)
                    // the files a run rewrites do not make the code dirty
                    .args([
                        "status",
                        "--porcelain",
                        "--untracked-files=no",
                        "--",
                        ":(top)",
                        ":(top,exclude)BENCHMARKS.md",
                        ":(top,exclude)benches/charts",
                    ])
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| !o.stdout.is_empty());
                match dirty {
                    Some(true) => format!("{hash}, working tree with uncommitted changes"),
                    Some(false) => {
                        format!("{hash}, clean working tree (BENCHMARKS.md and its charts aside)")
                    }
                    None => hash,
                }
            }
            None => "unknown".into(),
        };
        Machine {
            rows: vec![
                ("CPU".into(), format!("{model}, {count} logical CPUs")),
                ("memory".into(), memory),
                ("kernel".into(), kernel),
                ("OS".into(), os),
                ("rustc".into(), rustc),
                ("build".into(), profile.into()),
                ("commit".into(), commit),
                ("date".into(), utc_minutes(SystemTime::now())),
                ("command".into(), format!("`{command}`")),
            ],
        }
    }

    pub(super) fn render(&self, md: &mut String) {
        let _ = writeln!(md, "### Machine\n");
        let _ = writeln!(md, "| | |");
        let _ = writeln!(md, "|---|---|");
        for (what, value) in &self.rows {
            let _ = writeln!(md, "| {} | {} |", cell(what), cell(value));
        }
        md.push('\n');
    }
}

/// The first line of a command's standard output, if it runs and succeeds.
fn run_line(program: &str, args: &[&str], dir: Option<&Path>) -> Option<String> {
    let mut cmd = Command::new(program);
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .to_owned();
    (!line.is_empty()).then_some(line)
}

/// A command line as one string, each argument quoted for a POSIX shell
/// where it needs it; the program is named by its file name only.
pub fn command_line(args: &[String]) -> String {
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            let a = if i == 0 {
                Path::new(a)
                    .file_name()
                    .map_or_else(|| a.clone(), |n| n.to_string_lossy().into_owned())
            } else {
                a.clone()
            };
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        let args = [
            "/work/main/target/release/flagpost-bench",
            "all",
            "--write",
            "/tmp/a b/BENCHMARKS.md",
            "it's",
        ]
        .map(String::from);
        assert_eq!(
            command_line(&args),
            r"flagpost-bench all --write '/tmp/a b/BENCHMARKS.md' 'it'\''s'"
        );
    }
}
