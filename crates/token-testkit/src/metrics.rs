//! A `metrics` recorder for tests: keeps every counter and gauge, readable by name and labels.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};

#[derive(Default)]
struct Cell(AtomicU64);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + value).to_bits())
            });
    }

    fn decrement(&self, value: f64) {
        GaugeFn::increment(self, -value);
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// Keeps every counter and gauge registered with it.
#[derive(Default)]
pub struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<Cell>>>,
    gauges: Mutex<HashMap<String, Arc<Cell>>>,
}

/// `name{label=value,...}` with labels sorted.
fn render(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl TestRecorder {
    /// The process's recorder, installed globally on first use.
    pub fn global() -> &'static TestRecorder {
        static RECORDER: OnceLock<&'static TestRecorder> = OnceLock::new();
        RECORDER.get_or_init(|| {
            let recorder: &'static TestRecorder = Box::leak(Box::default());
            metrics::set_global_recorder(Forward(recorder))
                .expect("no other metrics recorder is installed in this test binary");
            recorder
        })
    }

    /// A counter's value, by `name{label=value,...}` (labels sorted); 0 if never registered.
    pub fn counter(&self, rendered: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(rendered)
            .map_or(0, |c| c.0.load(Ordering::Relaxed))
    }

    /// A gauge's value, by `name{label=value,...}` (labels sorted).
    pub fn gauge(&self, rendered: &str) -> Option<f64> {
        self.gauges
            .lock()
            .unwrap()
            .get(rendered)
            .map(|c| f64::from_bits(c.0.load(Ordering::Relaxed)))
    }

    /// Every metric name registered, rendered (for failure messages).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.counters.lock().unwrap().keys().cloned().collect();
        names.extend(self.gauges.lock().unwrap().keys().cloned());
        names.sort();
        names
    }
}

struct Forward(&'static TestRecorder);

impl Recorder for Forward {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let cell = Arc::clone(
            self.0
                .counters
                .lock()
                .unwrap()
                .entry(render(key))
                .or_default(),
        );
        Counter::from_arc(cell)
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let cell = Arc::clone(
            self.0
                .gauges
                .lock()
                .unwrap()
                .entry(render(key))
                .or_default(),
        );
        Gauge::from_arc(cell)
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}
