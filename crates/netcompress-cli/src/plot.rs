//! Line plots as SVG (plotters, SVG backend only): accuracy against sparsity, bits, T or MACs.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{CliError, Result};
use compress_checkpoint::{Pending, commit};

/// One line of a plot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    /// Legend label.
    pub(crate) label: String,
    /// `(x, y)` points in drawing order.
    pub(crate) points: Vec<(f64, f64)>,
}

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plot {
    /// Title.
    pub(crate) title: String,
    /// X axis label.
    pub(crate) x_label: String,
    /// Y axis label.
    pub(crate) y_label: String,
    /// Lines.
    pub(crate) series: Vec<Series>,
}

const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

/// `[lo, hi]` of `v` widened by 5% (and made non-empty).
fn span(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
            (l.min(x), h.max(x))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-3 * hi.abs().max(1.0));
    (lo - pad, hi + pad)
}

/// Renders `plot` as an SVG document.
///
/// # Errors
///
/// [`CliError::Usage`] when plotters fails to draw (it never should with finite points).
pub(crate) fn render_svg(plot: &Plot) -> Result<String> {
    let mut svg = String::new();
    {
        let err = |e: &dyn std::fmt::Display| CliError::Usage(format!("plot: {e}"));
        let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (x0, x1) = span(
            plot.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
        );
        let (y0, y1) = span(
            plot.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(&plot.title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(plot.x_label.as_str())
            .y_desc(plot.y_label.as_str())
            .draw()
            .map_err(|e| err(&e))?;
        for (i, s) in plot.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// Renders `plot` and writes it to `path` atomically (temporary file + rename).
///
/// # Errors
///
/// Drawing or I/O errors.
pub(crate) fn write_svg(plot: &Plot, path: &Path) -> Result<()> {
    let svg = render_svg(plot)?;
    commit(vec![Pending::from_bytes(path, svg.as_bytes())?])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lines_labels_and_legend() {
        let plot = Plot {
            title: "accuracy vs sparsity".into(),
            x_label: "sparsity".into(),
            y_label: "accuracy".into(),
            series: vec![
                Series {
                    label: "one-shot".into(),
                    points: vec![(0.0, 0.97), (0.5, 0.96), (0.9, 0.7)],
                },
                Series {
                    label: "fine-tuned".into(),
                    points: vec![(0.0, 0.97), (0.9, f64::NAN)],
                },
            ],
        };
        let svg = render_svg(&plot).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        for text in [
            "accuracy vs sparsity",
            "sparsity",
            "one-shot",
            "fine-tuned",
            "<polyline",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
    }
}
