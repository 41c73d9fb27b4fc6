//! The latency distribution as an SVG: latency (ms) against percentile, on the usual HDR axis where
//! each step right is one more nine (50 %, 90 %, 99 %, 99.9 %, 99.99 %).

use std::fmt::Write as _;

use hdrhistogram::Histogram;

const W: f64 = 720.0;
const H: f64 = 400.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// The axis ends at 99.999 %.
const NINES: f64 = 5.0;

/// One curve: a name and its histogram (microseconds).
pub struct Series<'a> {
    pub name: &'a str,
    pub hist: &'a Histogram<u64>,
}

/// The points of a curve: (nines, latency ms) for quantiles from 0 to 99.999 %.
pub fn points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..=100)
        .map(|i| {
            let nines = NINES * f64::from(i) / 100.0;
            let q = 1.0 - 10f64.powf(-nines);
            #[allow(clippy::cast_precision_loss)]
            let ms = h.value_at_quantile(q) as f64 / 1000.0;
            (nines, ms)
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG document.
pub fn render(title: &str, series: &[Series<'_>]) -> String {
    let curves: Vec<(&str, Vec<(f64, f64)>)> =
        series.iter().map(|s| (s.name, points(s.hist))).collect();
    let max_ms = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(0.0f64, f64::max)
        .max(0.001);
    let y_top = nice_ceiling(max_ms);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |n: f64| LEFT + n / NINES * pw;
    let y = |ms: f64| TOP + ph - ms / y_top * ph;

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Grid and axes.
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        #[allow(clippy::cast_precision_loss)]
        let gx = x(i as f64);
        let _ = writeln!(
            o,
            r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + ph,
            TOP + ph + 16.0
        );
    }
    for i in 0..=4 {
        let ms = y_top * f64::from(i) / 4.0;
        let gy = y(ms);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            gy + 4.0,
            fmt_ms(ms)
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + pw / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        o,
        r#"<text x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">latency (ms)</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    for (k, (name, pts)) in curves.iter().enumerate() {
        let colour = colours[k % colours.len()];
        if !pts.is_empty() {
            let path: Vec<String> = pts
                .iter()
                .map(|(n, ms)| format!("{:.1},{:.1}", x(*n), y(*ms)))
                .collect();
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        #[allow(clippy::cast_precision_loss)]
        let ly = TOP + 14.0 + 16.0 * k as f64;
        let _ = writeln!(
            o,
            r#"<rect x="{:.1}" y="{:.1}" width="12" height="3" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 12.0,
            ly - 4.0,
            LEFT + 30.0,
            ly,
            escape(name)
        );
    }
    o.push_str("</svg>\n");
    o
}

/// A round number ≥ v for the top of the axis (1, 2, 5 × a power of ten).
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 10.0 || ms == 0.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::histogram;

    #[test]
    fn curve_points_follow_the_quantiles() {
        let mut h = histogram();
        for us in 1..=10_000u64 {
            h.record(us * 10).expect("in range"); // 0.01 … 100 ms
        }
        let p = points(&h);
        assert_eq!(p.len(), 101);
        assert_eq!(p[0].0, 0.0);
        assert!((p[20].0 - 1.0).abs() < 1e-9); // one nine: 90 %
        assert!((p[20].1 - 90.0).abs() < 0.1, "{:?}", p[20]);
        assert!((p[40].1 - 99.0).abs() < 0.1, "{:?}", p[40]);
        assert!(p.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(points(&histogram()).is_empty());
    }

    #[test]
    fn renders_an_svg_with_one_line_per_series() {
        let mut a = histogram();
        a.record_n(2000, 99).expect("in range");
        a.record(40_000).expect("in range");
        let b = histogram();
        let svg = render(
            "fanout <1000> & co",
            &[
                Series {
                    name: "delivery",
                    hist: &a,
                },
                Series {
                    name: "ack",
                    hist: &b,
                },
            ],
        );
        assert!(svg.starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1); // the empty series has a legend only
        assert!(svg.contains("fanout &lt;1000&gt; &amp; co"));
        assert!(svg.contains(">delivery<") && svg.contains(">ack<"));
        assert!(svg.contains(">50<"), "axis top is 50 ms for a 40 ms max");
    }

    #[test]
    fn axis_tops() {
        assert_eq!(nice_ceiling(40.0), 50.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
        assert_eq!(nice_ceiling(101.0), 200.0);
        assert!((nice_ceiling(0.013) - 0.02).abs() < 1e-12);
    }
}
