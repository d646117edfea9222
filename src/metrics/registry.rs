//! Metric families and their Prometheus text exposition (format 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;

/// Prometheus metric types used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever increases (within a run).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted in cumulative buckets.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Label pairs of one series, in the order given.
pub type Labels = Vec<(&'static str, String)>;

/// Buckets, sum and count of one histogram series.
#[derive(Debug, Clone, Default, PartialEq)]
struct Buckets {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// One metric family.
#[derive(Debug, Clone)]
struct Family {
    help: &'static str,
    kind: Kind,
    /// Upper bounds of a histogram's buckets (without `+Inf`).
    bounds: Vec<f64>,
    values: BTreeMap<Labels, f64>,
    histograms: BTreeMap<Labels, Buckets>,
}

/// Every metric of a process, rendered in name and label order.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    families: BTreeMap<&'static str, Family>,
}

impl Registry {
    fn family(&mut self, name: &'static str, kind: Kind, help: &'static str) -> &mut Family {
        let f = self.families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            bounds: Vec::new(),
            values: BTreeMap::new(),
            histograms: BTreeMap::new(),
        });
        debug_assert_eq!(f.kind, kind, "{name} registered with two kinds");
        f
    }

    /// Declares a family so that it is exposed (with its help) before it has a series.
    pub fn declare(&mut self, name: &'static str, kind: Kind, help: &'static str) {
        self.family(name, kind, help);
    }

    /// Sets a gauge.
    pub fn set(&mut self, name: &'static str, help: &'static str, labels: Labels, v: f64) {
        self.family(name, Kind::Gauge, help)
            .values
            .insert(labels, v);
    }

    /// Sets a counter to a total counted elsewhere (a changelog's count).
    pub fn set_total(&mut self, name: &'static str, help: &'static str, labels: Labels, v: f64) {
        self.family(name, Kind::Counter, help)
            .values
            .insert(labels, v);
    }

    /// Adds to a counter.
    pub fn add(&mut self, name: &'static str, help: &'static str, labels: Labels, v: f64) {
        *self
            .family(name, Kind::Counter, help)
            .values
            .entry(labels)
            .or_insert(0.0) += v;
    }

    /// Removes a gauge series (a series that ended, to keep label sets bounded).
    pub fn remove(&mut self, name: &'static str, labels: &Labels) {
        if let Some(f) = self.families.get_mut(name) {
            f.values.remove(labels);
        }
    }

    /// Records one observation in a histogram with `bounds` (ascending upper bounds).
    pub fn observe(
        &mut self,
        name: &'static str,
        help: &'static str,
        bounds: &[f64],
        labels: Labels,
        v: f64,
    ) {
        let f = self.family(name, Kind::Histogram, help);
        if f.bounds.is_empty() {
            f.bounds = bounds.to_vec();
        }
        let n = f.bounds.len();
        let b = f.histograms.entry(labels).or_insert_with(|| Buckets {
            counts: vec![0; n],
            ..Default::default()
        });
        for (i, le) in f.bounds.iter().enumerate() {
            if v <= *le {
                b.counts[i] += 1;
            }
        }
        b.sum += v;
        b.count += 1;
    }

    /// The series of a gauge or counter family.
    pub fn series(&self, name: &str) -> impl Iterator<Item = (&Labels, f64)> {
        self.families
            .get(name)
            .into_iter()
            .flat_map(|f| f.values.iter().map(|(l, v)| (l, *v)))
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(f.help));
            let _ = writeln!(out, "# TYPE {name} {}", f.kind.name());
            for (labels, v) in &f.values {
                let _ = writeln!(out, "{name}{} {}", label_text(labels, None), number(*v));
            }
            for (labels, b) in &f.histograms {
                for (le, c) in f.bounds.iter().zip(&b.counts) {
                    let le = number(*le);
                    let _ = writeln!(out, "{name}_bucket{} {c}", label_text(labels, Some(&le)));
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    label_text(labels, Some("+Inf")),
                    b.count
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{} {}",
                    label_text(labels, None),
                    number(b.sum)
                );
                let _ = writeln!(out, "{name}_count{} {}", label_text(labels, None), b.count);
            }
        }
        out
    }
}

/// A sample value as Prometheus writes it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn label_text(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut s = String::from("{");
    let mut first = true;
    let pairs = labels
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(le.map(|le| ("le", le)));
    for (k, v) in pairs {
        if !first {
            s.push(',');
        }
        first = false;
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_in_order_with_escaped_labels() {
        let mut r = Registry::default();
        r.set("b_gauge", "A gauge.", vec![("x", "a\"b\\c\nd".into())], 1.5);
        r.add("a_total", "A counter.", vec![], 2.0);
        r.add("a_total", "A counter.", vec![], 1.0);
        r.observe("c_seconds", "A histogram.", &[0.1, 1.0], vec![], 0.5);
        r.observe("c_seconds", "A histogram.", &[0.1, 1.0], vec![], 5.0);
        let text = r.render();
        assert_eq!(
            text,
            "# HELP a_total A counter.\n# TYPE a_total counter\na_total 3\n\
             # HELP b_gauge A gauge.\n# TYPE b_gauge gauge\nb_gauge{x=\"a\\\"b\\\\c\\nd\"} 1.5\n\
             # HELP c_seconds A histogram.\n# TYPE c_seconds histogram\n\
             c_seconds_bucket{le=\"0.1\"} 0\nc_seconds_bucket{le=\"1\"} 1\n\
             c_seconds_bucket{le=\"+Inf\"} 2\nc_seconds_sum 5.5\nc_seconds_count 2\n"
        );
    }
}
