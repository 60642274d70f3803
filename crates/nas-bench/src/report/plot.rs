//! SVG charts (plotters' SVG backend: text is written as SVG `<text>`, so no font files are
//! read). One chart type covers every report: lines (optionally as steps, with a shaded band),
//! scatter groups and horizontal reference lines, with a legend.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

/// Tableau 10: distinguishable, and readable on white.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const GREY: RGBColor = RGBColor(170, 170, 170);

/// The `i`-th colour of the palette (cycling).
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// A line, e.g. a mean curve with its confidence band.
#[derive(Clone, Debug, Default)]
pub struct Line {
    /// Legend entry (none when empty).
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Shaded band `(x, low, high)`, drawn under the line; empty for none.
    pub band: Vec<(f64, f64, f64)>,
    /// Draw as a staircase (a best-so-far value holds until the next change).
    pub step: bool,
    /// Palette index (default: the line's position).
    pub color: Option<usize>,
}

/// A group of markers.
#[derive(Clone, Debug, Default)]
pub struct Points {
    /// Legend entry (none when empty).
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Palette index; `None` draws small grey background markers.
    pub color: Option<usize>,
    /// Marker radius in pixels.
    pub size: u32,
}

/// A whole chart.
#[derive(Clone, Debug, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    pub points: Vec<Points>,
    /// Horizontal reference lines `(legend, y)`, e.g. the benchmark optimum.
    pub hlines: Vec<(String, f64)>,
    /// Legend in the upper right corner (default: lower right, out of the way of curves
    /// that rise).
    pub legend_top: bool,
}

/// Staircase points: each value holds until the next x.
pub fn steps(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for (i, &(x, y)) in points.iter().enumerate() {
        if i > 0 {
            out.push((x, points[i - 1].1));
        }
        out.push((x, y));
    }
    out
}

/// `[min, max]` of some values, padded by 4 % (and widened when degenerate); `None` when
/// there is no finite value.
fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return None;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.04
    } else {
        (lo.abs() * 0.05).max(1e-9)
    };
    Some((lo - pad, hi + pad))
}

/// Tick labels with as many decimals as the axis range needs.
fn formatter(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
    let step = ((hi - lo) / 10.0).abs().max(f64::MIN_POSITIVE);
    let decimals = (-step.log10().floor()).clamp(0.0, 8.0) as usize;
    let big = lo.abs().max(hi.abs()) >= 1e6;
    move |v: &f64| {
        if big {
            format!("{v:.2e}")
        } else {
            format!("{v:.decimals$}")
        }
    }
}

impl Chart {
    fn x_values(&self) -> impl Iterator<Item = f64> + '_ {
        let lines = self.lines.iter().flat_map(|l| {
            l.points
                .iter()
                .map(|p| p.0)
                .chain(l.band.iter().map(|b| b.0))
        });
        let points = self
            .points
            .iter()
            .flat_map(|p| p.points.iter().map(|q| q.0));
        lines.chain(points)
    }

    fn y_values(&self) -> impl Iterator<Item = f64> + '_ {
        let lines = self.lines.iter().flat_map(|l| {
            l.points
                .iter()
                .map(|p| p.1)
                .chain(l.band.iter().flat_map(|b| [b.1, b.2]))
        });
        let points = self
            .points
            .iter()
            .flat_map(|p| p.points.iter().map(|q| q.1));
        lines.chain(points).chain(self.hlines.iter().map(|h| h.1))
    }

    /// The chart as an SVG document.
    pub fn to_svg(&self, size: (u32, u32)) -> anyhow::Result<String> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            self.draw(&root)
                .map_err(|e| anyhow::anyhow!("drawing {}: {e}", self.title))?;
            root.present()
                .map_err(|e| anyhow::anyhow!("drawing {}: {e}", self.title))?;
        }
        Ok(svg)
    }

    /// Writes the chart as an SVG file (800 x 500).
    pub fn write_svg(&self, path: &Path) -> anyhow::Result<()> {
        let svg = self.to_svg((800, 500))?;
        std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
    }

    fn draw(
        &self,
        root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
        root.fill(&WHITE)?;
        let (x0, x1) = range(self.x_values()).unwrap_or((0.0, 1.0));
        let (y0, y1) = range(self.y_values()).unwrap_or((0.0, 1.0));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let xf = formatter(x0, x1);
        let yf = formatter(y0, y1);
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_label_formatter(&xf)
            .y_label_formatter(&yf)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let mut legend = false;
        for (i, line) in self.lines.iter().enumerate() {
            let c = color(line.color.unwrap_or(i));
            if line.band.len() > 1 {
                let mut poly: Vec<(f64, f64)> = Vec::new();
                let lower: Vec<(f64, f64)> = line.band.iter().map(|b| (b.0, b.1)).collect();
                let upper: Vec<(f64, f64)> = line.band.iter().map(|b| (b.0, b.2)).collect();
                let (lower, mut upper) = if line.step {
                    (steps(&lower), steps(&upper))
                } else {
                    (lower, upper)
                };
                upper.reverse();
                poly.extend(lower);
                poly.extend(upper);
                chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.15).filled())))?;
            }
        }
        for (i, line) in self.lines.iter().enumerate() {
            let c = color(line.color.unwrap_or(i));
            let pts = if line.step {
                steps(&line.points)
            } else {
                line.points.clone()
            };
            let series = chart.draw_series(LineSeries::new(pts, c.stroke_width(2)))?;
            if !line.name.is_empty() {
                legend = true;
                series.label(line.name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            }
        }
        for group in &self.points {
            let (style, size) = match group.color {
                Some(i) => (color(i).filled(), group.size.max(1)),
                None => (GREY.mix(0.7).filled(), group.size.max(1)),
            };
            let series = chart.draw_series(
                group
                    .points
                    .iter()
                    .map(move |&p| Circle::new(p, size, style)),
            )?;
            if !group.name.is_empty() {
                legend = true;
                series
                    .label(group.name.as_str())
                    .legend(move |(x, y)| Circle::new((x + 10, y), size.max(3), style));
            }
        }
        for (name, y) in &self.hlines {
            let series = chart.draw_series(LineSeries::new(
                vec![(x0, *y), (x1, *y)],
                BLACK.mix(0.6).stroke_width(1),
            ))?;
            if !name.is_empty() {
                legend = true;
                series.label(name.as_str()).legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.6).stroke_width(1))
                });
            }
        }
        if legend {
            chart
                .configure_series_labels()
                .position(if self.legend_top {
                    SeriesLabelPosition::UpperRight
                } else {
                    SeriesLabelPosition::LowerRight
                })
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_hold_each_value_until_the_next_x() {
        assert_eq!(
            steps(&[(1.0, 0.5), (3.0, 0.7), (4.0, 0.9)]),
            vec![(1.0, 0.5), (3.0, 0.5), (3.0, 0.7), (4.0, 0.7), (4.0, 0.9)]
        );
        assert!(steps(&[]).is_empty());
    }

    #[test]
    fn a_chart_renders_text_lines_bands_and_markers() {
        let chart = Chart {
            title: "best so far".into(),
            x_label: "trials".into(),
            y_label: "test accuracy (%)".into(),
            lines: vec![Line {
                name: "REA".into(),
                points: vec![(1.0, 90.0), (2.0, 92.0), (3.0, 93.0)],
                band: vec![(1.0, 89.0, 91.0), (2.0, 91.0, 93.0), (3.0, 92.0, 94.0)],
                step: true,
                color: None,
            }],
            points: vec![Points {
                name: "evolution".into(),
                points: vec![(2.0, 92.0)],
                color: Some(1),
                size: 4,
            }],
            hlines: vec![("optimum".into(), 94.37)],
            legend_top: false,
        };
        let svg = chart.to_svg((640, 400)).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        for text in [
            "best so far",
            "trials",
            "REA",
            "evolution",
            "optimum",
            "<polygon",
            "<circle",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
    }

    #[test]
    fn empty_and_flat_charts_still_render() {
        let empty = Chart {
            title: "nothing".into(),
            ..Chart::default()
        };
        assert!(empty.to_svg((320, 200)).unwrap().contains("nothing"));
        let flat = Chart {
            title: "flat".into(),
            lines: vec![Line {
                points: vec![(1.0, 5.0), (2.0, 5.0)],
                ..Line::default()
            }],
            ..Chart::default()
        };
        assert!(flat.to_svg((320, 200)).is_ok());
    }
}
