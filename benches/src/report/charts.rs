//! The report's charts as PNG files: [`draw_charts`] draws every chart the
//! run has data for into a directory (once the font at [`FONT_PATH`] is
//! loaded), removes the ones it did not draw, and records what happened as
//! [`Charts`], which the generated section links relative to the markdown
//! file. What each chart shows is drawn in the sibling module `plots`.

use std::fmt::{self, Write as _};
use std::path::{Component, Path, PathBuf};

use super::fmt::cell;
use super::plots::{chart_cdf, chart_fanout, chart_memory, chart_throughput};
use super::Report;

/// Where the charts' font is expected (Debian: `fonts-dejavu-core`).
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// The Debian package that installs [`FONT_PATH`].
pub const FONT_PACKAGE: &str = "fonts-dejavu-core";

/// What happened to the charts of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charts {
    /// Charts were not asked for.
    NotRequested,
    /// No chart was drawn, for this reason (e.g. the font is missing).
    Skipped(String),
    /// The charts drawn, and the ones that failed.
    Drawn {
        /// The charts written.
        charts: Vec<Chart>,
        /// Charts that could not be drawn, and why.
        failed: Vec<String>,
    },
}

/// One chart written as a PNG file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chart {
    /// Its title (the image's alt text).
    pub title: String,
    /// The file written.
    pub file: PathBuf,
    /// Its path relative to the markdown file's directory, with `/`.
    pub link: String,
    /// Its size in bytes.
    pub bytes: u64,
}

impl Charts {
    pub(super) fn render(&self, md: &mut String) {
        let _ = writeln!(md, "### Charts\n");
        match self {
            Charts::NotRequested => {
                let _ = writeln!(md, "Not drawn in this run.\n");
            }
            Charts::Skipped(why) => {
                let _ = writeln!(md, "Charts skipped: {}.\n", cell(why));
            }
            Charts::Drawn { charts, failed } => {
                if charts.is_empty() && failed.is_empty() {
                    let _ = writeln!(md, "Nothing in this run to chart.\n");
                }
                for c in charts {
                    let _ = writeln!(md, "![{}]({})\n", c.title, c.link);
                }
                for f in failed {
                    let _ = writeln!(md, "- chart not drawn: {}", cell(f));
                }
                if !failed.is_empty() {
                    md.push('\n');
                }
            }
        }
    }
}

/// Why a chart could not be drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartError {
    /// The chart's file name.
    pub chart: &'static str,
    /// What failed.
    pub message: String,
}

impl fmt::Display for ChartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.chart, self.message)
    }
}

impl std::error::Error for ChartError {}

/// The file names of the charts [`draw_charts`] may write.
pub const CHART_FILES: [&str; 4] = [
    "wake-latency-cdf.png",
    "publish-throughput.png",
    "idle-memory.png",
    "fanout-p99.png",
];

/// Draws the report's charts as PNG files into `dir` (created if needed),
/// linked relative to `link_base` (the markdown file's directory): the
/// wake-latency CDF of every system, the peers' publish throughput, the
/// idle memory per subscriber and the fan-out p99 by N, each when the run
/// has its data. Chart files of [`CHART_FILES`] this run did not draw are
/// removed from `dir`, so the directory holds this run's charts only.
/// Without the font at [`FONT_PATH`] nothing is drawn. Never panics.
pub fn draw_charts(report: &Report, dir: &Path, link_base: &Path) -> Charts {
    if let Err(why) = load_font(Path::new(FONT_PATH)) {
        return Charts::Skipped(why);
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Charts::Skipped(format!("{}: {e}", dir.display()));
    }
    let mut charts = Vec::new();
    let mut failed = Vec::new();
    type Draw = fn(&Report, &Path) -> Result<Option<String>, ChartError>;
    let all: [(&str, Draw); 4] = [
        (CHART_FILES[0], chart_cdf),
        (CHART_FILES[1], chart_throughput),
        (CHART_FILES[2], chart_memory),
        (CHART_FILES[3], chart_fanout),
    ];
    for (name, draw) in all {
        let file = dir.join(name);
        match draw(report, &file) {
            Ok(Some(title)) => charts.push(Chart {
                title,
                link: relative_link(link_base, &file),
                bytes: std::fs::metadata(&file).map_or(0, |m| m.len()),
                file,
            }),
            Ok(None) => {
                // not in this run: do not leave an older run's chart behind
                let _ = std::fs::remove_file(&file);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&file);
                failed.push(e.to_string());
            }
        }
    }
    Charts::Drawn { charts, failed }
}

/// Registers the TTF at `path` as plotters' `sans-serif` (once per
/// process).
fn load_font(path: &Path) -> Result<(), String> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes = read_font(path)?;
            // plotters keeps the font for the life of the process
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a usable TrueType font", path.display()))
        })
        .clone()
}

/// The bytes of the font file at `path`, or why not, naming the package
/// that installs it.
fn read_font(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "the font {} cannot be read ({e}); install the Debian package {FONT_PACKAGE}",
            path.display()
        )
    })
}

/// `file` relative to `base` (both made absolute), with `/` separators; the
/// absolute path when there is no relative one.
fn relative_link(base: &Path, file: &Path) -> String {
    let absolute = |p: &Path| {
        std::fs::canonicalize(p).unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_owned())
        })
    };
    let base = absolute(base);
    let file = absolute(file);
    let b: Vec<Component<'_>> = base.components().collect();
    let f: Vec<Component<'_>> = file.components().collect();
    let common = b.iter().zip(&f).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return file.to_string_lossy().into_owned();
    }
    let mut parts: Vec<String> = vec!["..".into(); b.len() - common];
    parts.extend(
        f[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{measured, peer_run, throughput};
    use crate::report::FanoutPoint;
    use crate::Latency;

    #[test]
    fn links_are_relative_to_the_markdown_file() {
        let base = std::env::temp_dir().join(format!("flagpost-link-test-{}", std::process::id()));
        let charts = base.join("benches/charts");
        std::fs::create_dir_all(&charts).expect("dirs");
        assert_eq!(
            relative_link(&base, &charts.join("wake-latency-cdf.png")),
            "benches/charts/wake-latency-cdf.png"
        );
        assert_eq!(relative_link(&charts, &base.join("x.png")), "../../x.png");
        let _ = std::fs::remove_dir_all(&base);
    }

    /// A report with every kind of chart data, shaped like a full run.
    fn chart_report() -> Report {
        let mut r = Report::new();
        r.add_latency(
            "floor: UDP → relay → TCP",
            &measured(&[40, 45, 48, 50, 74, 113]),
        );
        r.add_latency(
            "Flagpost, raw datagram",
            &measured(&[44, 48, 52, 60, 83, 175]),
        );
        r.add_latency("Flagpost, Notifier", &measured(&[45, 50, 57, 66, 82, 163]));
        let mut run = peer_run();
        run.systems[1].throughput[1] = throughput(100, 20_324.0);
        r.set_peers(run);
        let latency = |p50_us: f64, p99_us: f64| Latency {
            samples: 50,
            p50_us,
            p99_us,
            p999_us: p99_us,
            max_us: p99_us,
        };
        for (n, fp, floor) in [
            (1, 57.0, 55.0),
            (100, 500.0, 486.0),
            (10_000, 47_776.0, 53_936.0),
        ] {
            r.add_fanout(FanoutPoint {
                n,
                flagpost: latency(fp, fp * 2.0),
                floor: latency(floor, floor * 2.0),
            });
        }
        r.add_memory_bar("Flagpost N=10k", 322.0);
        r.add_memory_bar("bare TCP N=10k", 0.0);
        r
    }

    #[test]
    fn draws_charts_or_says_which_package_is_missing() {
        let base =
            std::env::temp_dir().join(format!("flagpost-charts-test-{}", std::process::id()));
        let dir = base.join("benches/charts");
        let _ = std::fs::remove_dir_all(&base);
        let stale = dir.join("fanout-p99.png");
        std::fs::create_dir_all(&dir).expect("dirs");
        std::fs::write(&stale, b"an older run's chart").expect("write");

        let mut report = chart_report();
        let charts = draw_charts(&report, &dir, &base);
        if !Path::new(FONT_PATH).is_file() {
            match charts {
                Charts::Skipped(why) => assert!(why.contains(FONT_PACKAGE), "{why}"),
                other => panic!("expected the charts to be skipped: {other:?}"),
            }
            let _ = std::fs::remove_dir_all(&base);
            return;
        }
        let Charts::Drawn { charts, failed } = charts else {
            panic!("charts not drawn: {charts:?}");
        };
        assert!(failed.is_empty(), "{failed:?}");
        let links: Vec<&str> = charts.iter().map(|c| c.link.as_str()).collect();
        assert_eq!(
            links,
            [
                "benches/charts/wake-latency-cdf.png",
                "benches/charts/publish-throughput.png",
                "benches/charts/idle-memory.png",
                "benches/charts/fanout-p99.png",
            ]
        );
        for c in &charts {
            let bytes = std::fs::read(&c.file).expect("chart written");
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", c.file.display());
            assert_eq!(bytes.len() as u64, c.bytes);
            // small enough for the repository, big enough to hold a chart
            assert!(
                (5_000..150_000).contains(&c.bytes),
                "{}: {} B",
                c.link,
                c.bytes
            );
        }
        let mut md = String::new();
        Charts::Drawn {
            charts: charts.clone(),
            failed: Vec::new(),
        }
        .render(&mut md);
        assert!(
            md.contains("](benches/charts/wake-latency-cdf.png)"),
            "{md}"
        );

        // a run without fan-out figures removes the older fan-out chart
        report.fanout.clear();
        let Charts::Drawn { charts, .. } = draw_charts(&report, &dir, &base) else {
            panic!("charts not drawn");
        };
        assert_eq!(charts.len(), 3);
        assert!(!stale.exists());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_missing_font_names_its_package() {
        let why = read_font(Path::new("/nonexistent/DejaVuSans.ttf")).expect_err("no such file");
        assert!(why.contains("/nonexistent/DejaVuSans.ttf"), "{why}");
        assert!(why.contains(FONT_PACKAGE), "{why}");
        let mut md = String::new();
        Charts::Skipped(why).render(&mut md);
        assert!(
            md.starts_with("### Charts\n\nCharts skipped: the font"),
            "{md}"
        );
        assert!(!md.contains("!["));
    }
}
