//! What `Watched::get()` costs next to the obvious alternatives, while a
//! writer swaps the value every millisecond (a hot rotation):
//!
//! - `arcswap`: the real [`Watched::get`] (an `ArcSwap<Snapshot>` `load`, a
//!   guard that touches no shared reference count);
//! - `arcswap_with`: [`Watched::with`] (the same load, through a closure);
//! - `rwlock`: `RwLock<Arc<Snapshot>>`, read lock then clone;
//! - `mutex`: `Mutex<Arc<Snapshot>>`, lock then clone.
//!
//! Each with 1 and 2 reader threads. Run:
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-sdk cargo bench -p keyshift-client --bench get
//! ```
//!
//! Criterion reports the time per `get` per reader thread; a summary table
//! (median of 5 runs of 2 million gets per reader) is printed at the end.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use criterion::Criterion;
use keyshift_client::{Snapshot, Watched};
use keyshift_core::{SecretValue, VersionNumber};

fn snapshot(version: u64) -> Snapshot {
    Snapshot {
        name: "bench/api".parse().expect("valid name"),
        version: VersionNumber(version),
        value: SecretValue::new("x".repeat(64)).expect("valid value"),
        seq: version,
    }
}

/// Something that holds the current snapshot. `current_version` gets it the holder's
/// way and reads its version, as a caller would.
trait Holder: Send + Sync + 'static {
    fn current_version(&self) -> u64;
    fn set(&self, s: Snapshot);
}

impl Holder for Watched {
    fn current_version(&self) -> u64 {
        self.get().version.0
    }
    fn set(&self, s: Snapshot) {
        self.replace(s);
    }
}

/// [`Watched::with`] instead of [`Watched::get`].
struct With(Watched);

impl Holder for With {
    fn current_version(&self) -> u64 {
        self.0.with(|s| s.version.0)
    }
    fn set(&self, s: Snapshot) {
        self.0.replace(s);
    }
}

impl Holder for RwLock<Arc<Snapshot>> {
    fn current_version(&self) -> u64 {
        let snap = self.read().expect("not poisoned").clone();
        snap.version.0
    }
    fn set(&self, s: Snapshot) {
        *self.write().expect("not poisoned") = Arc::new(s);
    }
}

impl Holder for Mutex<Arc<Snapshot>> {
    fn current_version(&self) -> u64 {
        let snap = self.lock().expect("not poisoned").clone();
        snap.version.0
    }
    fn set(&self, s: Snapshot) {
        *self.lock().expect("not poisoned") = Arc::new(s);
    }
}

/// `readers` threads each make `iters` gets while a writer swaps the value
/// every millisecond; returns the mean time a reader took.
fn run(holder: &Arc<dyn Holder>, readers: usize, iters: u64) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let holder = holder.clone();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut v = 1;
            while !stop.load(Ordering::Relaxed) {
                v += 1;
                holder.set(snapshot(v));
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let start = Arc::new(Barrier::new(readers));
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let holder = holder.clone();
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(holder.current_version());
                }
                t.elapsed()
            })
        })
        .collect();
    let total: Duration = threads.into_iter().map(|t| t.join().expect("reader")).sum();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    total / u32::try_from(readers).expect("few readers")
}

fn holders() -> Vec<(&'static str, Arc<dyn Holder>)> {
    vec![
        (
            "arcswap",
            Arc::new(Watched::fixed(snapshot(1))) as Arc<dyn Holder>,
        ),
        ("arcswap_with", Arc::new(With(Watched::fixed(snapshot(1))))),
        ("rwlock", Arc::new(RwLock::new(Arc::new(snapshot(1))))),
        ("mutex", Arc::new(Mutex::new(Arc::new(snapshot(1))))),
    ]
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_while_swapping_every_1ms");
    group.measurement_time(Duration::from_secs(3));
    for readers in [1, 2] {
        for (name, holder) in holders() {
            group.bench_function(format!("{name}/{readers}_readers"), |b| {
                b.iter_custom(|iters| run(&holder, readers, iters));
            });
        }
    }
    group.finish();
}

/// Median ns per get of five runs of 2 million gets per reader.
fn summary() {
    const ITERS: u64 = 2_000_000;
    println!(
        "\nns per get (median of 5 runs, {ITERS} gets per reader, writer swapping every 1 ms):"
    );
    println!("{:<13} {:>10} {:>10}", "holder", "1 reader", "2 readers");
    for (name, holder) in holders() {
        let mut row = Vec::new();
        for readers in [1, 2] {
            let mut runs: Vec<f64> = (0..5)
                .map(|_| run(&holder, readers, ITERS).as_nanos() as f64 / ITERS as f64)
                .collect();
            runs.sort_by(f64::total_cmp);
            row.push(runs[2]);
        }
        println!("{name:<13} {:>10.1} {:>10.1}", row[0], row[1]);
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    summary();
}
