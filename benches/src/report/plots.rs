//! What each chart draws: the wake-latency CDF, the peers' publish
//! throughput, the idle memory per subscriber and the fan-out latency by N,
//! drawn with plotters into an RGB buffer and encoded as PNG, with their
//! axis labels and colours.

use std::fmt;
use std::io;
use std::path::Path;

use hdrhistogram::Histogram;
use plotters::chart::ChartContext;
use plotters::coord::CoordTranslate;
use plotters::prelude::DrawingBackend;
use plotters::prelude::{
    ChartBuilder, Color, IntoDrawingArea, IntoFont, IntoLogRange, LineSeries, PathElement,
    RGBColor, Rectangle, SeriesLabelPosition, Text, BLACK, WHITE,
};
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::charts::{ChartError, CHART_FILES};
use super::fmt::fmt_num;
use super::{FanoutPoint, Report};

/// Chart size in pixels.
const CHART_SIZE: (u32, u32) = (900, 500);

type Area<'a> =
    plotters::drawing::DrawingArea<plotters::backend::BitMapBackend<'a>, plotters::coord::Shift>;

/// Draws into an RGB buffer with `draw` and writes it to `path` as PNG. A
/// panic inside plotters becomes an error.
fn render_png(
    chart: &'static str,
    path: &Path,
    draw: impl FnOnce(&Area<'_>) -> Result<(), String>,
) -> Result<(), ChartError> {
    let err = |message: String| ChartError { chart, message };
    let (w, h) = CHART_SIZE;
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let root =
            plotters::backend::BitMapBackend::with_buffer(&mut buf, CHART_SIZE).into_drawing_area();
        root.fill(&plotters::style::WHITE)
            .map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())
    }));
    match drawn {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(err(e)),
        Err(_) => return Err(err("plotters panicked".into())),
    }
    let file = std::fs::File::create(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let mut encoder = png::Encoder::new(io::BufWriter::new(file), w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header().map_err(|e| err(e.to_string()))?;
    writer
        .write_image_data(&buf)
        .map_err(|e| err(e.to_string()))?;
    writer.finish().map_err(|e| err(e.to_string()))
}

fn text_style(size: f64) -> plotters::style::TextStyle<'static> {
    plotters::style::TextStyle::from(("sans-serif", size).into_font())
}

/// Line and bar colours: Flagpost's blues and reds first, then the peers'.
const COLOURS: [RGBColor; 9] = [
    RGBColor(90, 90, 90),   // floor
    RGBColor(31, 119, 180), // Flagpost raw
    RGBColor(214, 39, 40),  // Flagpost Notifier
    RGBColor(255, 127, 14), // peers …
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// The CDF points of a histogram (µs, cumulative fraction), up to `cap` µs.
fn cdf_points(h: &Histogram<u64>, cap: f64) -> Vec<(f64, f64)> {
    let mut points = vec![(h.min().max(1) as f64 / 1000.0, 0.0)];
    let mut last = 0.0;
    for v in h.iter_recorded() {
        let x = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
        let y = v.percentile() / 100.0;
        if x > cap {
            points.push((cap, last));
            return points;
        }
        points.push((x, y));
        last = y;
    }
    points
}

pub(super) fn chart_cdf(report: &Report, path: &Path) -> Result<Option<String>, ChartError> {
    let mut series: Vec<(String, &Histogram<u64>)> = report
        .latency
        .iter()
        .map(|s| (s.name.clone(), &s.histogram))
        .collect();
    if let Some(run) = &report.peers {
        for s in &run.systems {
            if let Ok(m) = &s.wake {
                let name = if s.flagpost {
                    "Flagpost, Notifier (peers run)".to_owned()
                } else {
                    s.system.clone()
                };
                series.push((name, &m.histogram));
            }
        }
    }
    series.retain(|(_, h)| !h.is_empty());
    if series.is_empty() {
        return Ok(None);
    }
    let cap = series
        .iter()
        .map(|(_, h)| h.value_at_quantile(0.999) as f64 / 1000.0)
        .fold(0.0, f64::max)
        * 1.1;
    // from the power of ten below the fastest sample: log axes label powers
    // of ten and their multiples from the first one in range
    let low = series
        .iter()
        .map(|(_, h)| h.min().max(1) as f64 / 1000.0)
        .fold(f64::INFINITY, f64::min);
    let low = 10f64.powf(low.log10().floor());
    let title = "Wake latency, cumulative distribution (to p99.9, log scale)";
    render_png(CHART_FILES[0], path, |root| {
        let e = |e: &dyn fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .caption(title, text_style(20.0))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d((low..cap.max(low * 10.0)).log_scale(), 0.0..1.0)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("latency (µs, log scale)")
            .y_desc("fraction of wake-ups")
            .label_style(text_style(13.0))
            .axis_desc_style(text_style(14.0))
            .x_labels(40)
            .max_light_lines(0)
            .x_label_formatter(&|v| log_label(*v))
            .draw()
            .map_err(|x| e(&x))?;
        let mut next = 0;
        for (name, h) in &series {
            let colour = if name.starts_with("floor") {
                COLOURS[0]
            } else {
                next += 1;
                COLOURS[1 + (next - 1) % (COLOURS.len() - 1)]
            };
            chart
                .draw_series(LineSeries::new(cdf_points(h, cap), colour.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
    })?;
    Ok(Some(title.into()))
}

/// The legend box every chart uses, at `position`.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(text_style(13.0))
        .draw()
        .map_err(|x| x.to_string())
}

/// A short name for a peer on a bar chart's axis: its first word
/// (`PostgreSQL`, `mosquitto`).
fn short_name(system: &str) -> String {
    system
        .split_whitespace()
        .next()
        .unwrap_or(system)
        .trim_end_matches(',')
        .to_owned()
}

/// A log axis label for 1, 2 and 5 times a power of ten; no label for the
/// other ticks.
fn log_label(v: f64) -> String {
    if !(v.is_finite() && v > 0.0) {
        return String::new();
    }
    let mantissa = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6)
    {
        fmt_axis(v)
    } else {
        String::new()
    }
}

/// A value for a bar's label: 3 significant digits with k/M.
fn short_value(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", fmt_axis(v / 1e6))
    } else if v >= 1e4 {
        format!("{}k", fmt_axis(v / 1e3))
    } else {
        fmt_axis(v)
    }
}

/// An axis label: [`fmt_num`] without trailing zeros (`1`, `2.5`, `1,000`).
fn fmt_axis(v: f64) -> String {
    let s = fmt_num(v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Bars on a log y axis: groups of bars (one per entry of `legend`) at
/// x = 1, 2, …, labelled by the group's name.
fn bar_chart(
    root: &Area<'_>,
    title: &str,
    y_desc: &str,
    legend: &[(&str, RGBColor)],
    groups: &[(String, Vec<Option<f64>>)],
) -> Result<(), String> {
    let e = |e: &dyn fmt::Display| e.to_string();
    let values = groups
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if hi <= 0.0 {
        return Err("no positive value".into());
    }
    // a factor above 10, so that a power of ten (a labelled line) is in range
    let (lo, hi) = (lo / 4.0, hi * 4.0);
    let n = groups.len();
    let names: Vec<String> = groups.iter().map(|(name, _)| name.clone()).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(title, text_style(20.0))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..(n as f64 + 1.0), (lo..hi).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 2)
        .x_label_formatter(&|x| {
            let k = x.round();
            if (x - k).abs() < 1e-6 && k >= 1.0 {
                names.get(k as usize - 1).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .y_labels(8)
        .y_label_formatter(&|v| short_value(*v))
        .label_style(text_style(13.0))
        .axis_desc_style(text_style(14.0))
        .draw()
        .map_err(|x| e(&x))?;
    let per = legend.len().max(1) as f64;
    let width = 0.7 / per;
    let single = legend.len() == 1;
    for (j, (label, colour)) in legend.iter().enumerate() {
        let colour = *colour;
        // (left edge, value, the group's name)
        let bars: Vec<(f64, f64, &str)> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, (name, v))| {
                let v = v.get(j).copied().flatten()?;
                Some((i as f64 + 0.65 + j as f64 * width, v, name.as_str()))
            })
            .collect();
        // one series: Flagpost, the floor and the peers in their own colours
        let colour_of = |name: &str| {
            if !single {
                colour
            } else if name.starts_with("Flagpost") {
                COLOURS[1]
            } else if name.starts_with("bare") || name.starts_with("floor") {
                COLOURS[0]
            } else {
                COLOURS[3]
            }
        };
        let bar_width = width * 0.92;
        chart
            .draw_series(bars.iter().map(|&(left, v, name)| {
                Rectangle::new(
                    [(left, lo), (left + bar_width, v.max(lo * 1.01))],
                    colour_of(name).filled(),
                )
            }))
            .map_err(|x| e(&x))?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
        let above = text_style(12.0).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(bars.iter().map(|&(left, v, _)| {
                Text::new(
                    short_value(v),
                    (left + bar_width / 2.0, v.max(lo * 1.01) * 1.05),
                    above.clone(),
                )
            }))
            .map_err(|x| e(&x))?;
    }
    if legend.len() > 1 {
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    }
    Ok(())
}

pub(super) fn chart_throughput(report: &Report, path: &Path) -> Result<Option<String>, ChartError> {
    let Some(run) = &report.peers else {
        return Ok(None);
    };
    let groups: Vec<(String, Vec<Option<f64>>)> = run
        .systems
        .iter()
        .map(|s| {
            let rate = |subs: usize| {
                s.throughput
                    .iter()
                    .flatten()
                    .find(|t| t.subscribers == subs)
                    .map(|t| t.publishes_per_s)
            };
            (short_name(&s.system), vec![rate(1), rate(100)])
        })
        .filter(|(_, v)| v.iter().any(|x| x.is_some_and(|x| x > 0.0)))
        .collect();
    if groups.is_empty() {
        return Ok(None);
    }
    let title = "Publish throughput (publishes/s delivered to every subscriber, log scale)";
    render_png(CHART_FILES[1], path, |root| {
        bar_chart(
            root,
            title,
            "publishes per second",
            &[
                ("1 subscriber", COLOURS[1]),
                ("100 subscribers", COLOURS[3]),
            ],
            &groups,
        )
    })?;
    Ok(Some(title.into()))
}

pub(super) fn chart_memory(report: &Report, path: &Path) -> Result<Option<String>, ChartError> {
    let mut groups: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    if let Some(run) = &report.peers {
        for s in &run.systems {
            if let Ok(b) = &s.idle_bytes {
                let name = if s.flagpost {
                    "Flagpost (peers)".to_owned()
                } else {
                    short_name(&s.system)
                };
                groups.push((name, vec![Some(*b)]));
            }
        }
    }
    for (name, b) in &report.memory {
        groups.push((name.clone(), vec![Some(*b)]));
    }
    if groups.is_empty() {
        return Ok(None);
    }
    let title = "Server memory per idle subscriber (bytes, log scale)";
    render_png(CHART_FILES[2], path, |root| {
        bar_chart(
            root,
            title,
            "bytes per subscriber",
            &[("bytes", COLOURS[1])],
            &groups,
        )
    })?;
    Ok(Some(title.into()))
}

pub(super) fn chart_fanout(report: &Report, path: &Path) -> Result<Option<String>, ChartError> {
    let points: Vec<&FanoutPoint> = report
        .fanout
        .iter()
        .filter(|p| p.flagpost.samples > 0 && p.floor.samples > 0)
        .collect();
    if points.len() < 2 {
        return Ok(None);
    }
    let n_max = points.iter().map(|p| p.n).max().unwrap_or(1) as f64;
    let n_min = points.iter().map(|p| p.n).min().unwrap_or(1).max(1) as f64;
    let all = points.iter().flat_map(|p| {
        [
            p.flagpost.p50_us,
            p.flagpost.p99_us,
            p.floor.p50_us,
            p.floor.p99_us,
        ]
    });
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let title = "Fan-out: one notification until all N listeners have it";
    render_png(CHART_FILES[3], path, |root| {
        let e = |e: &dyn fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .caption(title, text_style(20.0))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(65)
            .build_cartesian_2d(
                (n_min * 0.8..n_max * 1.25).log_scale(),
                // from a power of ten: the log axis labels from the first one
                (10f64.powf(lo.max(0.1).log10().floor())..hi * 2.0).log_scale(),
            )
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("listeners N (log scale)")
            .y_desc("µs (log scale)")
            .x_labels(40)
            .max_light_lines(0)
            .y_labels(40)
            .x_label_formatter(&|v| log_label(*v))
            .y_label_formatter(&|v| log_label(*v))
            .label_style(text_style(13.0))
            .axis_desc_style(text_style(14.0))
            .draw()
            .map_err(|x| e(&x))?;
        type Line = (&'static str, RGBColor, u32, fn(&FanoutPoint) -> f64);
        let lines: [Line; 4] = [
            ("Flagpost p99", COLOURS[2], 3, |p| p.flagpost.p99_us),
            ("floor p99", COLOURS[0], 3, |p| p.floor.p99_us),
            ("Flagpost p50", COLOURS[1], 1, |p| p.flagpost.p50_us),
            ("floor p50", RGBColor(160, 160, 160), 1, |p| p.floor.p50_us),
        ];
        for (label, colour, width, value) in lines {
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (p.n as f64, value(p))),
                    colour.stroke_width(width),
                ))
                .map_err(|x| e(&x))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(width))
                });
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })?;
    Ok(Some(title.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::measured;

    #[test]
    fn cdf_points_rise_to_one_and_stop_at_the_cap() {
        let m = measured(&[10, 20, 30, 40, 1000]);
        let all = cdf_points(&m.histogram, f64::INFINITY);
        assert_eq!(all.first().map(|p| p.1), Some(0.0));
        assert!((all.last().map_or(0.0, |p| p.1) - 1.0).abs() < 1e-9);
        assert!(all.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let capped = cdf_points(&m.histogram, 100.0);
        assert_eq!(capped.last().map(|p| p.0), Some(100.0));
        assert!((capped.last().map_or(0.0, |p| p.1) - 0.8).abs() < 1e-9);
    }
}
