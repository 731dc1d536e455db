//! SVG line charts of bench results, written under `docs/bench/` at the repository root (only
//! by `cargo bench`; smoke runs write nothing).

use std::path::PathBuf;

use plotters::prelude::*;

/// One line: its name and its points.
pub struct Series {
    /// The legend.
    pub name: String,
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (a second measure of the same client, e.g. p99 next to p50).
    pub dashed: bool,
    /// Its colour (an index into a fixed palette): the same for the lines of one client.
    pub color: usize,
}

/// How to draw one axis.
#[derive(Clone, Copy)]
pub enum Axis {
    /// Linear from 0.
    Linear,
    /// Logarithmic.
    Log,
}

/// Where the plots go: `docs/bench/` at the repository root.
pub fn dir() -> PathBuf {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .nth(2)
        .unwrap_or(crate_dir)
        .join("docs/bench")
}

/// Writes a line chart to `docs/bench/{file}`; returns the path, or why it could not.
pub fn line_chart(
    file: &str,
    title: &str,
    (x_label, x_axis): (&str, Axis),
    (y_label, y_axis): (&str, Axis),
    series: &[Series],
) -> Result<PathBuf, String> {
    let path = dir().join(file);
    std::fs::create_dir_all(dir()).map_err(|e| e.to_string())?;
    let points = || series.iter().flat_map(|s| s.points.iter().copied());
    let range = |values: Vec<f64>, axis: Axis| {
        let (lo, hi) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        match axis {
            Axis::Linear => (0.0, if hi > 0.0 { hi * 1.08 } else { 1.0 }),
            Axis::Log => (lo.max(1e-9) / 1.5, hi.max(1e-9) * 1.5),
        }
    };
    let (x0, x1) = range(points().map(|p| p.0).collect(), x_axis);
    let (y0, y1) = range(points().map(|p| p.1).collect(), y_axis);
    let root = SVGBackend::new(&path, (1200, 560)).into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart.map_err(|e| fail(&e))?;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .draw()
                .map_err(|e| fail(&e))?;
            for s in series {
                let color = palette[s.color % palette.len()];
                let style = ShapeStyle::from(&color).stroke_width(2);
                let drawn = if s.dashed {
                    chart.draw_series(DashedLineSeries::new(s.points.iter().copied(), 6, 4, style))
                } else {
                    chart.draw_series(LineSeries::new(s.points.iter().copied(), style))
                };
                drawn
                    .map_err(|e| fail(&e))?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            }
            // The legend right of the plot, where no line can be under it.
            let width = chart.plotting_area().dim_in_pixel().0 as i32;
            chart
                .configure_series_labels()
                .background_style(WHITE)
                .border_style(BLACK)
                .position(SeriesLabelPosition::Coordinate(width + 16, 0))
                .draw()
                .map_err(|e| fail(&e))?;
        }};
    }
    let builder = || {
        let mut b = ChartBuilder::on(&root);
        b.caption(title, ("sans-serif", 20))
            .margin(16)
            .margin_right(340)
            .x_label_area_size(44)
            .y_label_area_size(70);
        b
    };
    match (x_axis, y_axis) {
        (Axis::Linear, Axis::Linear) => draw!(builder().build_cartesian_2d(x0..x1, y0..y1)),
        (Axis::Log, Axis::Linear) => {
            draw!(builder().build_cartesian_2d((x0..x1).log_scale(), y0..y1))
        }
        (Axis::Linear, Axis::Log) => {
            draw!(builder().build_cartesian_2d(x0..x1, (y0..y1).log_scale()))
        }
        (Axis::Log, Axis::Log) => {
            draw!(builder().build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale()))
        }
    }
    root.present().map_err(|e| fail(&e))?;
    drop(root);
    Ok(path)
}
