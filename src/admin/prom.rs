//! One Prometheus text writer, for the `/metrics` of the proxy, `sqlcache
//! cdc` and `sqlcache sink`.
//!
//! Policy: the text exposition format (0.0.4). Every family is written
//! whole at once — `# HELP`, `# TYPE`, then its samples — so a family is
//! never split or repeated. Names and label values are the callers'
//! constants or names the configuration checked (no escaping needed); values are integers or seconds as
//! floats.

use std::fmt::{Display, Write};

/// A metrics text being written.
#[derive(Default)]
pub struct Prom {
    out: String,
}

impl Prom {
    pub fn new() -> Prom {
        Prom {
            out: String::with_capacity(8192),
        }
    }

    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.head(name, "counter", help);
        let _ = writeln!(self.out, "{name} {v}");
    }

    pub fn gauge(&mut self, name: &str, help: &str, v: impl Display) {
        self.head(name, "gauge", help);
        let _ = writeln!(self.out, "{name} {v}");
    }

    /// A counter family with one label: a sample per label value.
    pub fn counters<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.head(name, "counter", help);
        for (value, v) in samples {
            let _ = writeln!(self.out, "{name}{{{label}=\"{value}\"}} {v}");
        }
    }

    /// A gauge family with a sample per label set (`topic="t",partition="0"`).
    pub fn labelled_gauges<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (&'a str, i64)>,
    ) {
        self.head(name, "gauge", help);
        for (labels, v) in samples {
            let _ = writeln!(self.out, "{name}{{{labels}}} {v}");
        }
    }

    /// A histogram family: per series, its labels (`route="hit"`, or empty),
    /// cumulative counts per upper bound in seconds, the sum in seconds and
    /// the count (the `+Inf` bucket).
    pub fn histogram<'a>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = Series<'a>>,
    ) {
        self.head(name, "histogram", help);
        for s in series {
            let sep = if s.labels.is_empty() { "" } else { "," };
            let labels = s.labels;
            for (le, c) in s.buckets {
                let _ = writeln!(self.out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {c}");
            }
            let count = s.count;
            let _ = writeln!(
                self.out,
                "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}"
            );
            let braced = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            };
            let _ = writeln!(self.out, "{name}_sum{braced} {}", s.sum);
            let _ = writeln!(self.out, "{name}_count{braced} {count}");
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// One series of a histogram.
pub struct Series<'a> {
    pub labels: &'a str,
    /// (upper bound in seconds, cumulative count).
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_whole_and_labelled() {
        let mut p = Prom::new();
        p.counter("a_total", "A.", 3);
        p.gauge("b", "B.", 0.5);
        p.counters("c_total", "C.", "why", [("x", 1), ("y", 2)]);
        p.histogram(
            "d_seconds",
            "D.",
            [
                Series {
                    labels: "route=\"hit\"",
                    buckets: vec![(0.001, 1), (0.01, 2)],
                    sum: 0.004,
                    count: 3,
                },
                Series {
                    labels: "",
                    buckets: vec![(0.001, 0)],
                    sum: 0.0,
                    count: 0,
                },
            ],
        );
        let t = p.finish();
        for line in [
            "# HELP a_total A.\n# TYPE a_total counter\na_total 3",
            "# TYPE b gauge\nb 0.5",
            "c_total{why=\"x\"} 1\nc_total{why=\"y\"} 2",
            "d_seconds_bucket{route=\"hit\",le=\"0.001\"} 1",
            "d_seconds_bucket{route=\"hit\",le=\"+Inf\"} 3",
            "d_seconds_sum{route=\"hit\"} 0.004\nd_seconds_count{route=\"hit\"} 3",
            "d_seconds_bucket{le=\"0.001\"} 0",
            "d_seconds_sum 0\nd_seconds_count 0",
        ] {
            assert!(t.contains(line), "{line:?} missing in\n{t}");
        }
        assert_eq!(t.matches("# TYPE d_seconds").count(), 1);
    }
}
