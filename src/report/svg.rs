//! Chart primitives written as SVG text: scales, ticks, thinning, axes, legends and a line chart
//! with vertical markers. Coordinates have one decimal, so the same data gives the same bytes.

use std::fmt::Write;

use super::html::{esc, fixed};

/// Series colours (Tableau 10, then eight darker ones), assigned in a fixed order.
pub(crate) const PALETTE: [&str; 18] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d",
    "#17becf", "#555555",
];

/// The `i`-th series colour (cycling).
pub(crate) fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// A pixel coordinate as text.
pub(crate) fn px(x: f64) -> String {
    fixed(x, 1)
}

/// A linear map from a data domain onto a pixel range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scale {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Scale {
    /// Maps `[d0, d1]` onto `[r0, r1]`; an empty domain is widened around its value.
    pub(crate) fn new((d0, d1): (f64, f64), (r0, r1): (f64, f64)) -> Scale {
        let (d0, d1) = if d1 > d0 {
            (d0, d1)
        } else {
            let pad = if d0 == 0.0 { 1.0 } else { d0.abs() * 0.05 };
            (d0 - pad, d0 + pad)
        };
        Scale { d0, d1, r0, r1 }
    }

    /// The pixel of `x`.
    pub(crate) fn map(&self, x: f64) -> f64 {
        self.r0 + (x - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }

    /// The (possibly widened) domain.
    pub(crate) fn domain(&self) -> (f64, f64) {
        (self.d0, self.d1)
    }
}

/// A base-10 logarithmic map from `[10^lo, 10^hi]` onto a pixel range; smaller values clamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LogScale {
    lin: Scale,
    lo: i32,
    hi: i32,
}

impl LogScale {
    /// The decades that cover the positive values `[min, max]`, mapped onto `[r0, r1]`.
    pub(crate) fn covering(min: f64, max: f64, range: (f64, f64)) -> LogScale {
        let lo = min.max(f64::MIN_POSITIVE).log10().floor() as i32;
        let hi = (max.max(min).max(f64::MIN_POSITIVE).log10().ceil() as i32).max(lo + 1);
        LogScale {
            lin: Scale::new((f64::from(lo), f64::from(hi)), range),
            lo,
            hi,
        }
    }

    /// The pixel of `x`.
    pub(crate) fn map(&self, x: f64) -> f64 {
        let l = if x > 0.0 {
            x.log10()
        } else {
            f64::from(self.lo)
        };
        self.lin.map(l.max(f64::from(self.lo)))
    }

    /// Every power of ten of the domain.
    pub(crate) fn decades(&self) -> Vec<f64> {
        (self.lo..=self.hi).map(|e| 10f64.powi(e)).collect()
    }
}

/// About `n` round tick values (steps of 1, 2 or 5 times a power of ten) within `[lo, hi]`.
pub(crate) fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi.is_nan() || lo.is_nan() || hi <= lo || n == 0 {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Tick steps for event time, in ms: 1 s up to 30 days.
const TIME_STEPS: [u64; 19] = [
    1_000,
    5_000,
    15_000,
    30_000,
    60_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    172_800_000,
    604_800_000,
    1_209_600_000,
    2_592_000_000,
];

/// At most `n` round event times (multiples of a step in [`TIME_STEPS`]) within `[lo, hi]`.
pub(crate) fn time_ticks(lo: u64, hi: u64, n: usize) -> Vec<u64> {
    let n = n.max(1) as u64;
    let span = hi.saturating_sub(lo);
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| span / s < n)
        .unwrap_or_else(|| span / n + 1);
    let first = lo.div_ceil(step) * step;
    (0..)
        .map(|i| first + i * step)
        .take_while(|t| *t <= hi)
        .collect()
}

/// An event time as an ISO-8601 UTC tick label (to the minute when whole minutes).
pub(crate) fn time_label(ms: u64) -> String {
    let s = super::html::iso(ms);
    if ms.is_multiple_of(60_000) {
        format!("{}Z", &s[..16])
    } else {
        s
    }
}

/// Indices of at most `max` of `n` items, evenly spread, always with the first and the last;
/// all of them when `n <= max`.
pub(crate) fn thin(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    if max <= 1 {
        return vec![0];
    }
    let mut out: Vec<usize> = (0..max)
        .map(|i| {
            ((i as u128 * (n as u128 - 1) + (max as u128 - 1) / 2) / (max as u128 - 1)) as usize
        })
        .collect();
    out.dedup();
    out
}

/// The plotting rectangle inside an `<svg>`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Area {
    /// Left edge, px.
    pub left: f64,
    /// Top edge, px.
    pub top: f64,
    /// Width, px.
    pub width: f64,
    /// Height, px.
    pub height: f64,
}

impl Area {
    /// Right edge.
    pub(crate) fn right(&self) -> f64 {
        self.left + self.width
    }

    /// Bottom edge.
    pub(crate) fn bottom(&self) -> f64 {
        self.top + self.height
    }
}

/// The opening tag of a chart.
pub(crate) fn open(id: &str, width: f64, height: f64, label: &str, data: &str) -> String {
    format!(
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{label}\"{data}>",
        id = esc(id),
        w = px(width),
        h = px(height),
        label = esc(label),
    )
}

/// The x axis along the bottom of `area`: gridlines and labels at `(pixel, label)` ticks, and
/// a title.
pub(crate) fn x_axis(area: &Area, ticks: &[(f64, String)], title: &str) -> String {
    let mut out = String::from("<g class=\"axis x\">");
    let (b, t) = (area.bottom(), area.top);
    let _ = write!(
        out,
        "<line class=\"frame\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
        px(area.left),
        px(b),
        px(area.right()),
        px(b)
    );
    for (x, label) in ticks {
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            px(t),
            px(b + 4.0),
            px(b + 16.0),
            esc(label),
            x = px(*x),
        );
    }
    let _ = write!(
        out,
        "<text class=\"title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text></g>",
        px(area.left + area.width / 2.0),
        px(b + 34.0),
        esc(title)
    );
    out
}

/// The y axis along the left of `area`, like [`x_axis`].
pub(crate) fn y_axis(area: &Area, ticks: &[(f64, String)], title: &str) -> String {
    let mut out = String::from("<g class=\"axis y\">");
    let l = area.left;
    let _ = write!(
        out,
        "<line class=\"frame\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
        px(l),
        px(area.top),
        px(l),
        px(area.bottom())
    );
    for (y, label) in ticks {
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            px(l - 4.0),
            px(area.right()),
            px(l - 6.0),
            px(y + 4.0),
            esc(label),
            y = px(*y),
        );
    }
    let (cx, cy) = (px(l - 52.0), px(area.top + area.height / 2.0));
    let _ = write!(
        out,
        "<text class=\"title\" x=\"{cx}\" y=\"{cy}\" text-anchor=\"middle\" transform=\"rotate(-90 {cx} {cy})\">{}</text></g>",
        esc(title)
    );
    out
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Swatch {
    /// A line, solid or dashed.
    Line {
        /// Dashed.
        dashed: bool,
    },
    /// A vertical marker line, solid or dashed.
    Marker {
        /// Dashed.
        dashed: bool,
    },
    /// A filled square.
    Box,
}

/// A legend entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// Its text.
    pub label: String,
    /// Its colour.
    pub color: String,
    /// Its swatch.
    pub swatch: Swatch,
}

/// Height a legend of `n` entries takes.
pub(crate) fn legend_height(n: usize) -> f64 {
    16.0 * n as f64 + 8.0
}

/// A legend as a column of entries with its top left corner at `(x, y)`.
pub(crate) fn legend(x: f64, y: f64, entries: &[Entry]) -> String {
    let mut out = String::from("<g class=\"legend\">");
    for (i, e) in entries.iter().enumerate() {
        let cy = y + 8.0 + 16.0 * i as f64;
        let c = esc(&e.color);
        match e.swatch {
            Swatch::Line { dashed } => {
                let _ = write!(
                    out,
                    "<line x1=\"{}\" y1=\"{cy}\" x2=\"{}\" y2=\"{cy}\" stroke=\"{c}\" stroke-width=\"2\"{}/>",
                    px(x),
                    px(x + 22.0),
                    if dashed { " stroke-dasharray=\"5 3\"" } else { "" },
                    cy = px(cy),
                );
            }
            Swatch::Marker { dashed } => {
                let _ = write!(
                    out,
                    "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"{c}\" stroke-width=\"2\"{}/>",
                    px(cy - 6.0),
                    px(cy + 6.0),
                    if dashed { " stroke-dasharray=\"3 2\"" } else { "" },
                    x = px(x + 11.0),
                );
            }
            Swatch::Box => {
                let _ = write!(
                    out,
                    "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\" stroke=\"#888\" stroke-width=\"0.5\"/>",
                    px(x + 5.0),
                    px(cy - 6.0),
                );
            }
        }
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            px(x + 28.0),
            px(cy + 4.0),
            esc(&e.label)
        );
    }
    out.push_str("</g>");
    out
}

/// `name="value"` pairs as attribute text (values escaped).
pub(crate) fn attrs(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        let _ = write!(out, " {k}=\"{}\"", esc(v));
    }
    out
}

/// One point of a series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    /// Its x (data units).
    pub x: f64,
    /// Its y (data units); `None` breaks the line.
    pub y: Option<f64>,
    /// `data-*` attributes of its circle.
    pub data: Vec<(&'static str, String)>,
    /// Its tooltip.
    pub title: String,
}

/// A line of points.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    /// Legend text.
    pub label: String,
    /// Colour.
    pub color: &'static str,
    /// Dashed line.
    pub dashed: bool,
    /// `data-*` attributes of its group.
    pub data: Vec<(&'static str, String)>,
    /// Points in x order.
    pub points: Vec<Point>,
}

/// A vertical line at an x value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Marker {
    /// Its x (data units).
    pub x: f64,
    /// Its CSS class (besides `marker`).
    pub class: &'static str,
    /// Colour.
    pub color: &'static str,
    /// Dashed.
    pub dashed: bool,
    /// `data-*` attributes.
    pub data: Vec<(&'static str, String)>,
    /// Its tooltip.
    pub title: String,
}

/// A line chart over event time (x in epoch ms) with markers and a legend at the right.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LineChart {
    /// The svg's id.
    pub id: String,
    /// Its accessible name.
    pub label: String,
    /// The x axis title.
    pub x_title: String,
    /// The y axis title.
    pub y_title: String,
    /// A fixed y domain; otherwise from zero (or the smallest value) to the largest.
    pub y_domain: Option<(f64, f64)>,
    /// The lines.
    pub series: Vec<Series>,
    /// The vertical markers.
    pub markers: Vec<Marker>,
    /// Legend entries for the markers.
    pub marker_legend: Vec<Entry>,
}

/// Width of every chart, px.
pub(crate) const WIDTH: f64 = 960.0;
/// Width of the legend column at the right of line charts, px.
const LEGEND_W: f64 = 230.0;

impl LineChart {
    /// The chart as an `<svg>` element.
    pub(crate) fn render(&self) -> String {
        let entries: Vec<Entry> = self
            .series
            .iter()
            .map(|s| Entry {
                label: s.label.clone(),
                color: s.color.to_string(),
                swatch: Swatch::Line { dashed: s.dashed },
            })
            .chain(self.marker_legend.iter().cloned())
            .collect();
        let plot_h = 260f64.max(legend_height(entries.len()) - 10.0);
        let area = Area {
            left: 70.0,
            top: 12.0,
            width: WIDTH - 70.0 - LEGEND_W - 20.0,
            height: plot_h,
        };
        let height = area.bottom() + 48.0;
        let xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.x))
            .chain(self.markers.iter().map(|m| m.x))
            .collect();
        let ys: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|p| p.y))
            .collect();
        let lo_x = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi_x = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo_x, hi_x) = if lo_x.is_finite() {
            (lo_x, hi_x)
        } else {
            (0.0, 1.0)
        };
        let x = Scale::new((lo_x, hi_x), (area.left, area.right()));
        let y_dom = self.y_domain.unwrap_or_else(|| {
            let lo = ys.iter().copied().fold(0f64, f64::min);
            let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo, if hi.is_finite() { hi * 1.05 } else { 1.0 })
        });
        let y = Scale::new(y_dom, (area.bottom(), area.top));
        let (x0, x1) = x.domain();
        let xt: Vec<(f64, String)> = time_ticks(x0.max(0.0).ceil() as u64, x1.max(0.0) as u64, 5)
            .into_iter()
            .map(|t| (x.map(t as f64), time_label(t)))
            .collect();
        let (y0, y1) = y.domain();
        let yt: Vec<(f64, String)> = ticks(y0, y1, 5)
            .into_iter()
            .map(|v| (y.map(v), tick_text(v)))
            .collect();

        let mut out = open(
            &self.id,
            WIDTH,
            height,
            &self.label,
            &attrs(&[("data-series", self.series.len().to_string())]),
        );
        out.push_str(&y_axis(&area, &yt, &self.y_title));
        out.push_str(&x_axis(&area, &xt, &self.x_title));
        for m in &self.markers {
            let _ = write!(
                out,
                "<line class=\"marker {}\" x1=\"{mx}\" y1=\"{}\" x2=\"{mx}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"1.5\"{}{}><title>{}</title></line>",
                m.class,
                px(area.top),
                px(area.bottom()),
                m.color,
                if m.dashed { " stroke-dasharray=\"3 2\"" } else { "" },
                attrs(&m.data),
                esc(&m.title),
                mx = px(x.map(m.x)),
            );
        }
        for s in &self.series {
            let _ = write!(out, "<g class=\"series\"{}>", attrs(&s.data));
            let mut d = String::new();
            let mut pen_down = false;
            for p in &s.points {
                match p.y {
                    Some(v) => {
                        let _ = write!(
                            d,
                            "{}{} {}",
                            if pen_down { " L" } else { " M" },
                            px(x.map(p.x)),
                            px(y.map(v))
                        );
                        pen_down = true;
                    }
                    None => pen_down = false,
                }
            }
            if !d.is_empty() {
                let _ = write!(
                    out,
                    "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"{}/>",
                    d.trim_start(),
                    s.color,
                    if s.dashed {
                        " stroke-dasharray=\"5 3\""
                    } else {
                        ""
                    }
                );
            }
            for p in &s.points {
                if let Some(v) = p.y {
                    let _ = write!(
                        out,
                        "<circle cx=\"{}\" cy=\"{}\" r=\"2.5\" fill=\"{}\"{}><title>{}</title></circle>",
                        px(x.map(p.x)),
                        px(y.map(v)),
                        s.color,
                        attrs(&p.data),
                        esc(&p.title)
                    );
                }
            }
            out.push_str("</g>");
        }
        out.push_str(&legend(area.right() + 16.0, area.top, &entries));
        out.push_str("</svg>");
        out
    }
}

/// A tick value as short text.
pub(crate) fn tick_text(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_map_their_domain_onto_their_range() {
        let s = Scale::new((0.0, 10.0), (100.0, 200.0));
        assert_eq!(s.map(0.0), 100.0);
        assert_eq!(s.map(5.0), 150.0);
        assert_eq!(s.map(10.0), 200.0);
        // Inverted ranges (y grows downwards).
        let y = Scale::new((0.0, 1.0), (300.0, 0.0));
        assert_eq!(y.map(0.25), 225.0);
        // An empty domain is widened, never divides by zero.
        let e = Scale::new((3.0, 3.0), (0.0, 10.0));
        assert_eq!(e.map(3.0), 5.0);
        assert!(Scale::new((0.0, 0.0), (0.0, 10.0)).map(0.0).is_finite());
        let l = LogScale::covering(2.0, 3000.0, (0.0, 400.0));
        assert_eq!(l.decades(), vec![1.0, 10.0, 100.0, 1000.0, 10000.0]);
        assert_eq!(l.map(1.0), 0.0);
        assert_eq!(l.map(100.0), 200.0);
        assert_eq!(l.map(0.0), 0.0, "non-positive values clamp to the bottom");
    }

    #[test]
    fn ticks_are_round_and_inside_the_domain() {
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(ticks(0.0, 0.9, 4), vec![0.0, 0.5]);
        let t = time_ticks(1_767_225_600_000, 1_767_227_400_000, 5);
        assert_eq!(t.len(), 4, "{t:?}");
        assert!(t.iter().all(|x| x % 600_000 == 0));
        assert_eq!(time_label(t[0]), "2026-01-01T00:00Z");
        assert_eq!(time_label(1_767_225_601_000), "2026-01-01T00:00:01Z");
        assert_eq!(tick_text(0.30000000000000004), "0.3");
    }

    #[test]
    fn thinning_is_deterministic_and_keeps_the_ends() {
        assert_eq!(thin(5, 10), vec![0, 1, 2, 3, 4]);
        let a = thin(1234, 500);
        assert_eq!(a, thin(1234, 500));
        assert_eq!(a.len(), 500);
        assert_eq!((a[0], a[499]), (0, 1233));
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        let b = thin(501, 500);
        assert_eq!(b.len(), 500);
        assert_eq!(thin(7, 1), vec![0]);
    }

    #[test]
    fn a_line_chart_carries_its_data_and_escapes_text() {
        let c = LineChart {
            id: "c".into(),
            label: "<chart>".into(),
            x_title: "x".into(),
            y_title: "y".into(),
            y_domain: Some((0.0, 1.0)),
            series: vec![Series {
                label: "seg=\"a\"".into(),
                color: color(0),
                dashed: true,
                data: vec![("data-segment", "a&b".into())],
                points: vec![
                    Point {
                        x: 0.0,
                        y: Some(0.5),
                        data: vec![("data-value", "0.5".into())],
                        title: "<p>".into(),
                    },
                    Point {
                        x: 60_000.0,
                        y: None,
                        data: vec![],
                        title: String::new(),
                    },
                    Point {
                        x: 120_000.0,
                        y: Some(1.0),
                        data: vec![("data-value", "1".into())],
                        title: String::new(),
                    },
                ],
            }],
            markers: vec![Marker {
                x: 60_000.0,
                class: "detection",
                color: "#000",
                dashed: false,
                data: vec![("data-event-time", "t".into())],
                title: "m".into(),
            }],
            marker_legend: vec![],
        };
        let s = c.render();
        assert_eq!(s, c.render());
        assert_eq!(
            s.matches("<circle").count(),
            2,
            "no circle for a missing value"
        );
        assert_eq!(
            s.matches(" M").count() + s.matches("d=\"M").count(),
            2,
            "the gap breaks the line"
        );
        assert!(s.contains("data-segment=\"a&amp;b\"") && s.contains("&lt;chart&gt;"));
        assert!(s.contains("seg=&quot;a&quot;") && s.contains("stroke-dasharray"));
        assert!(s.contains("data-event-time=\"t\""));
        assert!(!s.contains("<p>"));
    }
}
