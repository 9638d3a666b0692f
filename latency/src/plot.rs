//! `tsn-latency plot`: PNGs from per-frame CSVs (plotters' bitmap backend; text through ab_glyph
//! with a TrueType file read at run time, so no fontconfig or freetype is needed).
//!
//! - `latency_box.png`, `latency_cdf.png`: latency per run (the paper's Fig. 4), log axis, with
//!   the deadline; boxes span p25–p75 with the median, whiskers p1–p99, dots at min and max;
//! - `jitter_box.png`, `jitter_cdf.png`: jitter per run, likewise (linear, signed);
//! - `latency_avg.png`: latency averaged over each slice (10 s) against time, with the deadline
//!   (the paper's Fig. 5);
//! - `phase.png`: histogram of the arrival phase in the cycle, the gate window shaded.

use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::cli::PlotArgs;
use crate::csv;
use crate::error::Error;
use crate::stats::{percentile, slices, Analyzer, Mode, Row};
use crate::units::Window;

const SIZE: (u32, u32) = (1000, 600);
const FONT: &str = "sans-serif";

/// One run read back and re-analysed.
pub(crate) struct Run {
    pub(crate) label: String,
    pub(crate) rows: Vec<Row>,
    pub(crate) mode: Mode,
    pub(crate) deadline: i64,
    pub(crate) cycle: i64,
    pub(crate) window: Option<Window>,
}

pub(crate) fn load(label: &str, path: &Path) -> Result<Run, Error> {
    let r = csv::read(path)?;
    let mut an = Analyzer::new(r.params);
    let rows: Vec<Row> = r.samples.into_iter().map(|s| an.push(s)).collect();
    if rows.is_empty() {
        return Err(Error::EmptyRun(path.to_path_buf()));
    }
    Ok(Run {
        label: label.to_string(),
        rows,
        mode: r.params.mode,
        deadline: r.params.deadline,
        cycle: r.params.cycle,
        window: r.params.window,
    })
}

/// Registers the TrueType font plotters draws every label with (once per process).
pub(crate) fn register_font(path: &Path) -> Result<(), Error> {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(|source| Error::Font {
        path: path.to_path_buf(),
        source,
    })?;
    // plotters keeps a 'static reference: the font lives as long as the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| Error::BadFont(path.to_path_buf()))?;
    let _ = DONE.set(());
    Ok(())
}

pub(crate) fn run(a: &PlotArgs) -> Result<Vec<PathBuf>, Error> {
    register_font(&a.font)?;
    let runs = a
        .runs
        .iter()
        .map(|r| load(&r.label, &r.path))
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(&a.out).map_err(|source| Error::Write {
        path: a.out.clone(),
        source,
    })?;
    let deadline = a.deadline.map_or(runs[0].deadline, |d| d.as_i64());
    let window = a.window.or(runs.iter().find_map(|r| r.window));
    let slice = a.slice.as_i64().max(1);
    let mut written = Vec::new();
    let mut out = |name: &str| {
        let p = a.out.join(name);
        written.push(p.clone());
        p
    };
    latency_box(&out("latency_box.png"), &runs, deadline)?;
    latency_cdf(&out("latency_cdf.png"), &runs, deadline)?;
    jitter_box(&out("jitter_box.png"), &runs)?;
    jitter_cdf(&out("jitter_cdf.png"), &runs)?;
    latency_avg(&out("latency_avg.png"), &runs, deadline, slice)?;
    phase(&out("phase.png"), &runs, window)?;
    Ok(written)
}

fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    C[i % C.len()]
}

/// Turns a drawing error (of any of plotters' types) into ours, naming the file.
trait At<T> {
    fn at(self, path: &Path) -> Result<T, Error>;
}

impl<T, E: std::fmt::Display> At<T> for Result<T, E> {
    fn at(self, path: &Path) -> Result<T, Error> {
        self.map_err(|e| Error::Plot {
            path: path.to_path_buf(),
            what: e.to_string(),
        })
    }
}

fn what(mode: Mode) -> &'static str {
    match mode {
        Mode::OneWay => "latency",
        Mode::HalfRtt => "latency (RTT/2 estimate)",
    }
}

/// Distinct frames' values, µs.
fn latencies_us(r: &Run) -> Vec<f64> {
    r.rows
        .iter()
        .filter(|x| !x.dup)
        .map(|x| x.latency as f64 / 1e3)
        .collect()
}

fn jitters_us(r: &Run) -> Vec<f64> {
    r.rows
        .iter()
        .filter_map(|x| x.jitter)
        .map(|j| j as f64 / 1e3)
        .collect()
}

/// Box of one run: [min, p1, p25, p50, p75, p99, max].
fn box_stats(v: &[f64]) -> Option<[f64; 7]> {
    if v.is_empty() {
        return None;
    }
    // Percentiles on integer picoseconds keep the nearest-rank arithmetic of the summary.
    let mut ps: Vec<i64> = v.iter().map(|x| (x * 1e6).round() as i64).collect();
    ps.sort_unstable();
    let p = |q| percentile(&ps, q) as f64 / 1e6;
    Some([
        ps[0] as f64 / 1e6,
        p(100),
        p(2500),
        p(5000),
        p(7500),
        p(9900),
        ps[ps.len() - 1] as f64 / 1e6,
    ])
}

fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// A range around [lo, hi] with a margin, never empty.
fn padded(lo: f64, hi: f64) -> Range<f64> {
    let d = (hi - lo).abs().max(1e-3);
    (lo - 0.05 * d)..(hi + 0.05 * d)
}

/// Latency axis: log, from a bit under the smallest to a bit over the largest (and the deadline).
fn log_range(vals: &[Vec<f64>], deadline_us: f64) -> Range<f64> {
    let (lo, hi) = span(vals.iter().flatten().copied()).unwrap_or((1.0, 10.0));
    let lo = lo.max(1e-3).min(deadline_us) * 0.8;
    let hi = hi.max(deadline_us).max(lo * 10.0) * 1.25;
    lo..hi
}

const BOX_DESC: &str = "box p25..p75 with the median, whiskers p1..p99, dots min and max";

type Chart<'a, Y> = ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, Y>>;

fn draw_boxes<'a, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'a, Y>,
    root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    runs: &[Run],
    values: &[Vec<f64>],
    clip: Range<f64>,
) -> Result<(), String> {
    for (i, (run, v)) in runs.iter().zip(values).enumerate() {
        let Some([min, p1, p25, p50, p75, p99, max]) = box_stats(v) else {
            continue;
        };
        let c = color(i);
        let x = i as f64;
        // Values off the axis are drawn at its edge; min and max are written out.
        let cl = |y: f64| y.clamp(clip.start, clip.end);
        chart
            .draw_series([Rectangle::new(
                [(x - 0.3, cl(p25)), (x + 0.3, cl(p75))],
                c.mix(0.3).filled(),
            )])
            .map_err(|e| e.to_string())?;
        chart
            .draw_series([Rectangle::new(
                [(x - 0.3, cl(p25)), (x + 0.3, cl(p75))],
                c.stroke_width(2),
            )])
            .map_err(|e| e.to_string())?;
        let lines = [
            vec![(x - 0.3, cl(p50)), (x + 0.3, cl(p50))],
            vec![(x, cl(p75)), (x, cl(p99))],
            vec![(x, cl(p25)), (x, cl(p1))],
            vec![(x - 0.15, cl(p99)), (x + 0.15, cl(p99))],
            vec![(x - 0.15, cl(p1)), (x + 0.15, cl(p1))],
        ];
        chart
            .draw_series(
                lines
                    .into_iter()
                    .map(|l| PathElement::new(l, c.stroke_width(2))),
            )
            .map_err(|e| e.to_string())?;
        chart
            .draw_series([min, max].map(|y| Circle::new((x, cl(y)), 4, c.filled())))
            .map_err(|e| e.to_string())?;
        // The run's label under its box, and its median beside it.
        let (px, _) = chart.backend_coord(&(x, cl(p50)));
        let (_, bottom) = chart.plotting_area().get_pixel_range();
        let style =
            (FONT, 16)
                .into_font()
                .color(&BLACK)
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Top,
                ));
        root.draw(&Text::new(run.label.clone(), (px, bottom.end + 8), style))
            .map_err(|e| e.to_string())?;
        let small = (FONT, 13).into_font().color(&BLACK);
        for (y, text) in [
            (p50, format!("{p50:.1}")),
            (min, format!("min {min:.1}")),
            (max, format!("max {max:.1}")),
        ] {
            let (tx, ty) = chart.backend_coord(&(x + 0.03, cl(y)));
            let ty = ty - 7;
            let tx = if y == p50 {
                chart.backend_coord(&(x + 0.32, 0.0)).0
            } else {
                tx
            };
            root.draw(&Text::new(text, (tx, ty), small.clone()))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn hline<'a, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'a, Y>,
    y: f64,
    x: Range<f64>,
    label: &str,
) -> Result<(), String> {
    chart
        .draw_series([PathElement::new(
            vec![(x.start, y), (x.end, y)],
            RED.stroke_width(2),
        )])
        .map_err(|e| e.to_string())?
        .label(label.to_string())
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    Ok(())
}

fn latency_box(path: &Path, runs: &[Run], deadline: i64) -> Result<(), Error> {
    let vals: Vec<Vec<f64>> = runs.iter().map(latencies_us).collect();
    let d_us = deadline as f64 / 1e3;
    let yr = log_range(&vals, d_us);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).at(path)?;
    let xr = -0.6..(runs.len() as f64 - 0.4);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{} per run (us)", what(runs[0].mode)), (FONT, 24))
        .margin(15)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(xr.clone(), yr.clone().log_scale())
        .at(path)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .x_desc(BOX_DESC)
        .y_desc("us (log)")
        .label_style((FONT, 14))
        .draw()
        .at(path)?;
    draw_boxes(&mut chart, &root, runs, &vals, yr.clone()).at(path)?;
    hline(&mut chart, d_us, xr, &format!("deadline {d_us} us")).at(path)?;
    legend(&mut chart).at(path)?;
    root.present().at(path)
}

/// Jitter axis: the runs' p1..p99 with as much again on each side (a few late frames would
/// otherwise squash every box into a line); values beyond sit at the edge.
fn jitter_range(vals: &[Vec<f64>]) -> Range<f64> {
    let whiskers = vals
        .iter()
        .filter_map(|v| box_stats(v))
        .flat_map(|b| [b[1], b[5]]);
    let (lo, hi) = span(whiskers).unwrap_or((-1.0, 1.0));
    let s = (hi - lo).max(1.0);
    (lo - s)..(hi + s)
}

fn jitter_box(path: &Path, runs: &[Run]) -> Result<(), Error> {
    let vals: Vec<Vec<f64>> = runs.iter().map(jitters_us).collect();
    let yr = jitter_range(&vals);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).at(path)?;
    let xr = -0.6..(runs.len() as f64 - 0.4);
    let mut chart = ChartBuilder::on(&root)
        .caption("jitter t_i - (t_(i-1) + T) per run (us)", (FONT, 24))
        .margin(15)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(xr, yr.clone())
        .at(path)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .x_desc(BOX_DESC)
        .y_desc("us")
        .label_style((FONT, 14))
        .draw()
        .at(path)?;
    draw_boxes(&mut chart, &root, runs, &vals, yr).at(path)?;
    root.present().at(path)
}

/// Points of an empirical CDF, thinned to at most ~2000.
fn cdf_points(v: &[f64], clip: Range<f64>) -> Vec<(f64, f64)> {
    let cl = |x: f64| x.clamp(clip.start, clip.end);
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let step = (n / 2000).max(1);
    let mut pts: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (cl(s[i]), (i + 1) as f64 / n as f64))
        .collect();
    if let Some(&last) = s.last() {
        pts.push((cl(last), 1.0));
    }
    pts
}

fn legend<'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(|e| e.to_string())
}

fn latency_cdf(path: &Path, runs: &[Run], deadline: i64) -> Result<(), Error> {
    let vals: Vec<Vec<f64>> = runs.iter().map(latencies_us).collect();
    let d_us = deadline as f64 / 1e3;
    let xr = log_range(&vals, d_us);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).at(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{} CDF", what(runs[0].mode)), (FONT, 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(xr.clone().log_scale(), 0f64..1.0)
        .at(path)?;
    chart
        .configure_mesh()
        .x_desc("us (log)")
        .y_desc("fraction of frames")
        .label_style((FONT, 14))
        .draw()
        .at(path)?;
    for (i, (run, v)) in runs.iter().zip(&vals).enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(
                cdf_points(v, xr.clone()),
                c.stroke_width(2),
            ))
            .at(path)?
            .label(run.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .draw_series([PathElement::new(
            vec![(d_us, 0.0), (d_us, 1.0)],
            RED.stroke_width(2),
        )])
        .at(path)?
        .label(format!("deadline {d_us} us"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    legend(&mut chart).at(path)?;
    root.present().at(path)
}

fn jitter_cdf(path: &Path, runs: &[Run]) -> Result<(), Error> {
    let vals: Vec<Vec<f64>> = runs.iter().map(jitters_us).collect();
    let xr = jitter_range(&vals);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).at(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("jitter CDF", (FONT, 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(xr.clone(), 0f64..1.0)
        .at(path)?;
    chart
        .configure_mesh()
        .x_desc("us (p1..p99 and as much again each side; the rest at the edges)")
        .y_desc("fraction of frames")
        .label_style((FONT, 14))
        .draw()
        .at(path)?;
    for (i, (run, v)) in runs.iter().zip(&vals).enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(
                cdf_points(v, xr.clone()),
                c.stroke_width(2),
            ))
            .at(path)?
            .label(run.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart).at(path)?;
    root.present().at(path)
}

fn latency_avg(path: &Path, runs: &[Run], deadline: i64, slice: i64) -> Result<(), Error> {
    let d_us = deadline as f64 / 1e3;
    let series: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            slices(&r.rows, slice)
                .iter()
                .map(|s| ((s.start + slice / 2) as f64 / 1e9, s.mean / 1e3))
                .collect()
        })
        .collect();
    let (t_hi, y_hi) = series
        .iter()
        .flatten()
        .fold((0f64, d_us), |(t, y), p| (t.max(p.0), y.max(p.1)));
    let (_, y_lo) = span(series.iter().flatten().map(|p| p.1)).unwrap_or((0.0, 0.0));
    let xr = 0f64..(t_hi + slice as f64 / 2e9).max(1e-3);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).at(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{} averaged every {} s",
                what(runs[0].mode),
                slice as f64 / 1e9
            ),
            (FONT, 24),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(xr.clone(), padded(y_lo.min(0.0), y_hi))
        .at(path)?;
    chart
        .configure_mesh()
        .x_desc("time since the first frame (s)")
        .y_desc("mean latency (us)")
        .label_style((FONT, 14))
        .draw()
        .at(path)?;
    for (i, (run, pts)) in runs.iter().zip(&series).enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .at(path)?
            .label(run.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
            .at(path)?;
    }
    hline(&mut chart, d_us, xr, &format!("deadline {d_us} us")).at(path)?;
    legend(&mut chart).at(path)?;
    root.present().at(path)
}

/// Histogram bins of the arrival phase.
const PHASE_BINS: usize = 100;

fn phase(path: &Path, runs: &[Run], window: Option<Window>) -> Result<(), Error> {
    let cycle = runs
        .iter()
        .map(|r| r.cycle)
        .find(|&c| c > 0)
        .unwrap_or(1_000_000);
    let cycle_us = cycle as f64 / 1e3;
    let bin_us = cycle_us / PHASE_BINS as f64;
    let hists: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            let mut h = [0u64; PHASE_BINS];
            let mut n = 0u64;
            for p in r.rows.iter().filter(|x| !x.dup).filter_map(|x| x.phase) {
                let b = ((p as f64 / cycle as f64) * PHASE_BINS as f64) as usize;
                h[b.min(PHASE_BINS - 1)] += 1;
                n += 1;
            }
            let n = n.max(1) as f64;
            // A step outline: each bin as a flat top.
            h.iter()
                .enumerate()
                .flat_map(|(i, &c)| {
                    let y = 100.0 * c as f64 / n;
                    [(i as f64 * bin_us, y), ((i + 1) as f64 * bin_us, y)]
                })
                .collect()
        })
        .collect();
    let y_hi = hists.iter().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).at(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("arrival phase in the {cycle_us} us cycle"),
            (FONT, 24),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..cycle_us, 0f64..y_hi)
        .at(path)?;
    chart
        .configure_mesh()
        .x_desc("offset from the cycle start (us)")
        .y_desc("% of frames per bin")
        .label_style((FONT, 14))
        .draw()
        .at(path)?;
    if let Some(w) = window {
        let (a, b) = (w.start.0 as f64 / 1e3, w.end.0 as f64 / 1e3);
        let shade = RGBColor(120, 200, 120);
        chart
            .draw_series([Rectangle::new(
                [(a, 0.0), (b, y_hi)],
                shade.mix(0.3).filled(),
            )])
            .at(path)?
            .label(format!("window {a}..{b} us"))
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 20, y + 5)], shade.mix(0.5).filled())
            });
    }
    for (i, (run, pts)) in runs.iter().zip(&hists).enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .at(path)?
            .label(run.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart).at(path)?;
    root.present().at(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::RunSpec;
    use crate::csv::CsvWriter;
    use crate::stats::{Params, Sample};
    use crate::units::Nanos;

    const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

    /// A synthetic run: `n` frames at 1 ms, latency `base` plus a spread, a few outliers.
    fn write_run(path: &Path, n: u64, base: i64, window: Option<Window>) {
        let p = Params {
            window,
            ..Params::default()
        };
        let mut w = CsvWriter::create(path, &p).unwrap();
        let mut an = Analyzer::new(p);
        let t0 = 1_700_000_000_000_000_000i64;
        for q in 0..n {
            if q == 5 {
                continue; // one lost
            }
            let sched = t0 + q as i64 * 1_000_000;
            let spread = ((q * 7919) % 1000) as i64 * 10;
            let lat = base + spread + if q % 500 == 0 { 300_000 } else { 0 };
            w.row(&an.push(Sample {
                seq: q,
                sched,
                sent: sched + 2_000,
                arrival: sched + lat,
            }))
            .unwrap();
        }
        w.finish().unwrap();
    }

    fn decode(path: &Path) -> (u32, u32) {
        let dec = png::Decoder::new(std::fs::File::open(path).unwrap());
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        // Something was drawn: not every pixel is the white background.
        assert!(
            buf[..info.buffer_size()].iter().any(|&b| b != 255),
            "{} is blank",
            path.display()
        );
        (info.width, info.height)
    }

    #[test]
    fn plots_are_pngs_that_decode() {
        let dir = std::env::temp_dir().join(format!("tsn-latency-plot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let w = Window {
            start: Nanos::from_us(0),
            end: Nanos::from_us(200),
        };
        write_run(&dir.join("idle.csv"), 25_000, 20_000, Some(w));
        write_run(&dir.join("busy.csv"), 3_000, 60_000, None);
        let args = PlotArgs {
            runs: vec![
                RunSpec {
                    label: "idle".into(),
                    path: dir.join("idle.csv"),
                },
                RunSpec {
                    label: "best-effort load".into(),
                    path: dir.join("busy.csv"),
                },
            ],
            out: dir.join("png"),
            deadline: None,
            window: None,
            slice: Nanos::from_ms(10_000),
            font: FONT_PATH.into(),
        };
        let written = run(&args).unwrap();
        assert_eq!(written.len(), 6);
        for p in &written {
            assert_eq!(decode(p), SIZE, "{}", p.display());
        }
        // A run with no frames is refused, not drawn empty.
        std::fs::write(dir.join("empty.csv"), format!("{}\n", csv::HEADER)).unwrap();
        let empty = PlotArgs {
            runs: vec![RunSpec {
                label: "e".into(),
                path: dir.join("empty.csv"),
            }],
            ..args
        };
        assert!(matches!(run(&empty), Err(Error::EmptyRun(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn box_stats_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(
            box_stats(&v).unwrap(),
            [1.0, 1.0, 25.0, 50.0, 75.0, 99.0, 100.0]
        );
        assert!(box_stats(&[]).is_none());
        let pts = cdf_points(&[3.0, 1.0, 2.0], 0.0..10.0);
        assert_eq!(pts.first(), Some(&(1.0, 1.0 / 3.0)));
        assert_eq!(pts.last(), Some(&(3.0, 1.0)));
    }
}
