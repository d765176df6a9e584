//! Prometheus helpers shared by every service: metric constructors that cannot fail for the
//! fixed names and labels we use, one registry per service, and the text exposition.

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// A counter; the name and help are fixed strings, so construction cannot fail.
pub fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric name")
}

/// A counter with labels.
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric name and labels")
}

pub fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid metric name")
}

/// A histogram with labels and explicit buckets (seconds).
pub fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric name and labels")
}

/// A registry holding `collectors`.
pub fn registry(collectors: Vec<Box<dyn Collector>>) -> Registry {
    let registry = Registry::new();
    for c in collectors {
        registry
            .register(c)
            .expect("metric names are unique within a service");
    }
    registry
}

/// The text exposition format for `/metrics`.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("encoding to a Vec cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_render_with_their_labels() {
        let c = counter_vec("herald_test_things_total", "Things.", &["reason"]);
        let r = registry(vec![Box::new(c.clone())]);
        c.with_label_values(&["a"]).inc();
        assert!(render(&r).contains(r#"herald_test_things_total{reason="a"} 1"#));
    }
}
