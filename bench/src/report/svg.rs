//! Hand-written SVG plots: a log-log line chart (a measure against message size or reader
//! count) and a grouped bar chart on a log scale (latencies per system).

use std::fmt::Write;

pub struct Series {
    pub name: String,
    pub color: String,
    /// (x, y) for line charts; (category index, y) for bar charts.
    pub points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 64.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A log axis over whole decades covering `values`.
struct LogAxis {
    low: f64,
    high: f64,
}

impl LogAxis {
    fn covering(values: impl Iterator<Item = f64>) -> LogAxis {
        let (mut low, mut high) = (f64::MAX, f64::MIN);
        for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
            low = low.min(v);
            high = high.max(v);
        }
        if low > high {
            (low, high) = (1.0, 10.0);
        }
        let low = 10f64.powf(low.log10().floor());
        let mut high = 10f64.powf(high.log10().ceil());
        if high <= low {
            high = low * 10.0;
        }
        LogAxis { low, high }
    }

    /// Position in 0..=1.
    fn at(&self, v: f64) -> f64 {
        (v.max(self.low).log10() - self.low.log10()) / (self.high.log10() - self.low.log10())
    }

    fn decades(&self) -> Vec<f64> {
        let mut out = Vec::new();
        let mut v = self.low;
        while v <= self.high * 1.0001 {
            out.push(v);
            v *= 10.0;
        }
        out
    }
}

fn frame(out: &mut String, title: &str, y_label: &str, x_label: &str) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>
<text x="{}" y="{}" text-anchor="middle">{}</text>
"##,
        (LEFT + WIDTH - RIGHT) / 2.0,
        escape(title),
        (TOP + HEIGHT - BOTTOM) / 2.0,
        (TOP + HEIGHT - BOTTOM) / 2.0,
        escape(y_label),
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 16.0,
        escape(x_label),
    );
}

fn plot_width() -> f64 {
    WIDTH - LEFT - RIGHT
}

fn plot_height() -> f64 {
    HEIGHT - TOP - BOTTOM
}

fn y_grid(out: &mut String, axis: &LogAxis, label: &dyn Fn(f64) -> String) {
    for v in axis.decades() {
        let y = TOP + plot_height() * (1.0 - axis.at(v));
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_width(),
            LEFT - 6.0,
            y + 4.0,
            escape(&label(v))
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}" fill="none" stroke="#444444"/>"##,
        plot_width(),
        plot_height()
    );
}

fn legend(out: &mut String, series: &[Series], line: bool) {
    for (i, s) in series.iter().enumerate() {
        let x = WIDTH - RIGHT + 16.0;
        let y = TOP + 10.0 + i as f64 * 20.0;
        if line {
            let _ = writeln!(
                out,
                r##"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2.5"/><circle cx="{}" cy="{y}" r="3.5" fill="{}"/>"##,
                x + 22.0,
                s.color,
                x + 11.0,
                s.color
            );
        } else {
            let _ = writeln!(
                out,
                r##"<rect x="{x}" y="{}" width="22" height="10" fill="{}"/>"##,
                y - 5.0,
                s.color
            );
        }
        let _ = writeln!(out, r##"<text x="{}" y="{}">{}</text>"##, x + 28.0, y + 4.0, escape(&s.name));
    }
}

/// Lines on log-log axes; `x_ticks` are the labelled x values.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_ticks: &[(f64, String)],
    y_format: &dyn Fn(f64) -> String,
    series: &[Series],
) -> String {
    let mut out = String::new();
    frame(&mut out, title, y_label, x_label);
    let x_axis =
        LogAxis { low: x_ticks.first().map_or(1.0, |t| t.0), high: x_ticks.last().map_or(10.0, |t| t.0) };
    let y_axis = LogAxis::covering(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    y_grid(&mut out, &y_axis, y_format);
    let margin = 24.0;
    let x_at = |x: f64| LEFT + margin + (plot_width() - 2.0 * margin) * x_axis.at(x);
    let y_at = |y: f64| TOP + plot_height() * (1.0 - y_axis.at(y));
    for (x, label) in x_ticks {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            x_at(*x),
            TOP + plot_height() + 18.0,
            escape(label)
        );
    }
    for s in series {
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.1 > 0.0)
            .map(|&(x, y)| format!("{:.1},{:.1}", x_at(x), y_at(y)))
            .collect();
        if points.len() > 1 {
            let _ = writeln!(
                out,
                r##"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"/>"##,
                points.join(" "),
                s.color
            );
        }
        for p in &points {
            let (cx, cy) = p.split_once(',').expect("x,y");
            let _ = writeln!(out, r##"<circle cx="{cx}" cy="{cy}" r="3.5" fill="{}"/>"##, s.color);
        }
    }
    legend(&mut out, series, true);
    out.push_str("</svg>\n");
    out
}

/// Grouped bars on a log y axis: one group per category, one bar per series.
pub fn bar_chart(
    title: &str,
    y_label: &str,
    categories: &[String],
    y_format: &dyn Fn(f64) -> String,
    series: &[Series],
) -> String {
    let mut out = String::new();
    frame(&mut out, title, y_label, "");
    let y_axis = LogAxis::covering(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    y_grid(&mut out, &y_axis, y_format);
    let group = plot_width() / categories.len().max(1) as f64;
    let bar = (group * 0.8) / series.len().max(1) as f64;
    for (i, category) in categories.iter().enumerate() {
        // A label may have two lines, split at '\n'.
        for (line, text) in category.split('\n').enumerate() {
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                LEFT + group * (i as f64 + 0.5),
                TOP + plot_height() + 18.0 + 15.0 * line as f64,
                escape(text)
            );
        }
    }
    for (k, s) in series.iter().enumerate() {
        for &(category, value) in &s.points {
            if value <= 0.0 {
                continue;
            }
            let x = LEFT + group * category + group * 0.1 + bar * k as f64;
            let y = TOP + plot_height() * (1.0 - y_axis.at(value));
            let _ = writeln!(
                out,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"##,
                (bar - 1.0).max(1.0),
                TOP + plot_height() - y,
                s.color,
                escape(&s.name),
                escape(&y_format(value))
            );
        }
    }
    legend(&mut out, series, false);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed() {
        let series = vec![Series {
            name: "a & b".into(),
            color: "#000".into(),
            points: vec![(1.0, 5.0), (10.0, 500.0)],
        }];
        let ticks = vec![(1.0, "1".to_string()), (10.0, "10".to_string())];
        let line = line_chart("t", "x", "y", &ticks, &|v| format!("{v}"), &series);
        assert!(line.starts_with("<svg") && line.trim_end().ends_with("</svg>"));
        assert!(line.contains("a &amp; b") && line.contains("<polyline"));
        let bars = bar_chart("t", "y", &["c1".into(), "c2".into()], &|v| format!("{v}"), &series);
        assert_eq!(bars.matches("<title>").count(), 2, "one bar per category");
    }
}
