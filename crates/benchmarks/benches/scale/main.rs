//! Scale: one bookingtime client with N organizations (N = 100 … 10,000), sans-IO on
//! `token_core::TokenManager` (a fake token server answering in-process, virtual time) and
//! through `token_driver::Driver` (a recording executor answering in-process, a `ManualClock`).
//!
//! Operations, each reported per operation and as a ratio to the same operation at N = 100 in
//! the same run (flat means O(1) or O(log n) per operation):
//! - **startup**: register the client, then each organization's first fetch in turn (the first
//!   one also fetches the client's refresh token): a miss, the request, the response, the
//!   token served. Per organization, averaged over the N.
//! - **new org**: one more organization's first fetch with N already cached (the marginal cost).
//! - **hit**: a cached token for a random organization.
//! - **refresh**: one organization's refresh at its refresh point (all N armed): the timer that
//!   fires it, the request, the response.
//! - **timeout**: `handle_timeout` (sans-IO) / `Driver::run_timers` (driver) with N keys armed
//!   and nothing due.
//!
//! Organizations are fetched 10 ms of virtual time apart, so their refresh points are distinct
//! and each refresh fires exactly one timer. Rounds interleave the Ns, and each figure is the
//! median over the rounds.
//!
//! `cargo bench --bench scale` (about a minute); `-- --icount` instead runs every operation
//! under callgrind (instructions per operation, repeatable). `SCALE_N=100,500,4000` picks the
//! Ns. `cargo test --benches` runs a smoke version (N = 100 and 300, one round).
//!
//! The engine-specific code is in `engine.rs`; `crates/benchmarks/before/` has the same for the
//! engine before lifecycle v2, for the before/after table in BENCHMARKS.md.

mod engine;

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

/// Virtual time between two organizations' first fetches.
pub const SPACING: Duration = Duration::from_millis(10);

/// An engine under test: one bookingtime client and its organizations' keys.
pub trait Engine {
    /// Name in the report.
    const NAME: &'static str;
    /// A new manager or driver, with keys for `orgs` organizations prepared (not timed).
    fn new(orgs: usize) -> Self;
    /// Registers the bookingtime client (timed with the startup).
    fn register(&mut self);
    /// Organization `i`'s first fetch: virtual time moves on by [`SPACING`], then a miss, the
    /// requests it causes answered, and the token served.
    fn first_fetch(&mut self, i: usize);
    /// A cached token for organization `i`.
    fn hit(&mut self, i: usize);
    /// The next organization's refresh (in order of their first fetch), at its refresh point.
    fn refresh(&mut self);
    /// Run the timers with nothing due; `false` if the engine has no such entry point.
    fn timeout(&mut self) -> bool;
}

/// The fake token server's answer: bookingtime's refresh token (leg 1) or an organization's
/// 5-minute access token (leg 2), numbered.
pub fn answer(refresh_leg: bool, n: u64) -> http::Response<Vec<u8>> {
    let body = if refresh_leg {
        r#"{"refresh_token":"rt-1","token_type":"Bearer","expires_in":2592000}"#.to_owned()
    } else {
        format!(r#"{{"access_token":"at-{n}","token_type":"Bearer","expires_in":300}}"#)
    };
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.into_bytes())
        .expect("a valid response")
}

/// `org-00042`.
pub fn org(i: usize) -> String {
    format!("org-{i:05}")
}

const OPS: [&str; 5] = ["startup", "new org", "hit", "refresh", "timeout"];

struct Sizes {
    ns: Vec<usize>,
    rounds: usize,
    extra: usize,
    hits: usize,
    timeouts: usize,
    refreshes: usize,
}

impl Sizes {
    fn get() -> Sizes {
        let bench = std::env::args().any(|a| a == "--bench");
        let ns = std::env::var("SCALE_N")
            .ok()
            .map(|s| {
                s.split(',')
                    .map(|n| n.trim().parse().expect("SCALE_N: numbers"))
                    .collect()
            })
            .unwrap_or_else(|| {
                if bench {
                    vec![100, 500, 1_000, 4_000, 10_000]
                } else {
                    vec![100, 300]
                }
            });
        if bench {
            Sizes {
                ns,
                rounds: std::env::var("SCALE_ROUNDS")
                    .ok()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(7),
                extra: 100,
                hits: 20_000,
                timeouts: 20_000,
                refreshes: 100,
            }
        } else {
            Sizes {
                ns,
                rounds: 1,
                extra: 10,
                hits: 100,
                timeouts: 100,
                refreshes: 10,
            }
        }
    }
}

/// Random organization indices below `n` (xorshift; the same sequence every run).
fn random_indices(n: usize, count: usize) -> Vec<usize> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect()
}

/// One round at one N: per-operation times (`None` where the engine has no such operation).
fn round<E: Engine>(n: usize, s: &Sizes) -> [Option<Duration>; 5] {
    let mut e = E::new(n + s.extra);
    let t = Instant::now();
    e.register();
    for i in 0..n {
        e.first_fetch(i);
    }
    let startup = t.elapsed() / n as u32;
    let t = Instant::now();
    for i in n..n + s.extra {
        e.first_fetch(i);
    }
    let new_org = t.elapsed() / s.extra as u32;
    let picks = random_indices(n + s.extra, s.hits);
    let t = Instant::now();
    for &i in &picks {
        e.hit(i);
    }
    let hit = t.elapsed() / s.hits as u32;
    let t = Instant::now();
    let mut timeout = None;
    if e.timeout() {
        for _ in 1..s.timeouts {
            e.timeout();
        }
        timeout = Some(t.elapsed() / s.timeouts as u32);
    }
    let refreshes = s.refreshes.min(n);
    let t = Instant::now();
    for _ in 0..refreshes {
        e.refresh();
    }
    let refresh = t.elapsed() / refreshes as u32;
    let result = [
        Some(startup),
        Some(new_org),
        Some(hit),
        Some(refresh),
        timeout,
    ];
    drop(black_box(e)); // not measured
    result
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn fmt(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    if ns < 10_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 10_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.1} ms", ns / 1e6)
    }
}

fn wall_clock(s: &Sizes) {
    // samples[engine][n][op]
    let mut samples = vec![vec![vec![Vec::new(); OPS.len()]; s.ns.len()]; 2];
    for _ in 0..s.rounds {
        for (j, &n) in s.ns.iter().enumerate() {
            let results = [
                round::<engine::SansIo>(n, s),
                round::<engine::ViaDriver>(n, s),
            ];
            for (k, result) in results.iter().enumerate() {
                for (op, d) in result.iter().enumerate() {
                    if let Some(d) = d {
                        samples[k][j][op].push(*d);
                    }
                }
            }
        }
    }
    println!(
        "scale: one bookingtime client, N organizations; median of {} round(s); ratio to N = {}",
        s.rounds, s.ns[0]
    );
    for (k, name) in [engine::SansIo::NAME, engine::ViaDriver::NAME]
        .iter()
        .enumerate()
    {
        println!("  {name}");
        print!("    {:<9}", "op");
        for &n in &s.ns {
            print!(" {:>19}", format!("N = {n}"));
        }
        println!();
        for (op, op_name) in OPS.iter().enumerate() {
            print!("    {op_name:<9}");
            let base = (!samples[k][0][op].is_empty()).then(|| median(&mut samples[k][0][op]));
            for per_n in samples[k].iter_mut() {
                if per_n[op].is_empty() {
                    print!(" {:>19}", "–");
                    continue;
                }
                let m = median(&mut per_n[op]);
                let ratio = base.map_or(1.0, |b| m.as_secs_f64() / b.as_secs_f64());
                print!(" {:>19}", format!("{} ({ratio:.2}×)", fmt(m)));
            }
            println!();
        }
    }
}

/// Runs `f`; callgrind collects only inside this function.
#[inline(never)]
fn scale_measured(f: &mut dyn FnMut()) {
    f();
}

/// One operation at one N, under callgrind: set up (not collected), then `count` operations
/// inside [`scale_measured`]; returns `count`.
fn run_op<E: Engine>(op: &str, n: usize, s: &Sizes) -> usize {
    let mut e = E::new(n + s.extra);
    if op == "startup" {
        scale_measured(&mut || {
            e.register();
            for i in 0..n {
                e.first_fetch(i);
            }
        });
        return n;
    }
    e.register();
    for i in 0..n {
        e.first_fetch(i);
    }
    match op {
        "new org" => {
            scale_measured(&mut || {
                for i in n..n + s.extra {
                    e.first_fetch(i);
                }
            });
            s.extra
        }
        "hit" => {
            let picks = random_indices(n + s.extra, s.hits);
            for i in n..n + s.extra {
                e.first_fetch(i);
            }
            scale_measured(&mut || {
                for &i in &picks {
                    e.hit(i);
                }
            });
            s.hits
        }
        "timeout" => {
            if !e.timeout() {
                return 0;
            }
            scale_measured(&mut || {
                for _ in 0..s.timeouts {
                    e.timeout();
                }
            });
            s.timeouts
        }
        _ => {
            let count = s.refreshes.min(n);
            scale_measured(&mut || {
                for _ in 0..count {
                    e.refresh();
                }
            });
            count
        }
    }
}

fn icount(s: &Sizes) {
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("scale --icount: valgrind not found; skipped");
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    println!(
        "scale: instructions per operation (callgrind, inside `scale_measured` only); ratio to N = {}",
        s.ns[0]
    );
    for name in [engine::SansIo::NAME, engine::ViaDriver::NAME] {
        println!("  {name}");
        print!("    {:<9}", "op");
        for &n in &s.ns {
            print!(" {:>19}", format!("N = {n}"));
        }
        println!();
        for op in OPS {
            print!("    {op:<9}");
            let mut base = None;
            for &n in &s.ns {
                let output = Command::new("valgrind")
                    .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
                    .arg("--toggle-collect=*scale_measured*")
                    .arg(&exe)
                    .args(["--bench", "--op", name, op, &n.to_string()])
                    .output()
                    .expect("valgrind runs");
                let stdout = String::from_utf8_lossy(&output.stdout);
                let count = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("count "))
                    .and_then(|c| c.trim().parse::<f64>().ok())
                    .unwrap_or(0.0);
                let stderr = String::from_utf8_lossy(&output.stderr);
                let collected = stderr
                    .lines()
                    .find_map(|l| l.split("Collected :").nth(1))
                    .and_then(|c| c.trim().parse::<f64>().ok());
                match collected.filter(|_| output.status.success() && count > 0.0) {
                    Some(ir) => {
                        let per_op = ir / count;
                        let b = *base.get_or_insert(per_op);
                        print!(" {:>19}", format!("{per_op:.0} ({:.2}×)", per_op / b));
                    }
                    None if output.status.success() => print!(" {:>19}", "–"),
                    None => {
                        println!("\n    callgrind failed:\n{stderr}");
                        return;
                    }
                }
            }
            println!();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let s = Sizes::get();
    if let Some(at) = args.iter().position(|a| a == "--op") {
        let (name, op, n) = (
            &args[at + 1],
            &args[at + 2],
            args[at + 3].parse().expect("N"),
        );
        let count = if name == engine::SansIo::NAME {
            run_op::<engine::SansIo>(op, n, &s)
        } else {
            run_op::<engine::ViaDriver>(op, n, &s)
        };
        println!("count {count}");
        return;
    }
    if args.iter().any(|a| a == "--icount") {
        return icount(&s);
    }
    wall_clock(&s);
}
