//! Placement benchmark: `cargo bench -p knit-scheduler --bench placement`.
//!
//! Prints, for clusters of N nodes and S replicated slots (services of 10 replicas, no
//! constraints, unknown capacity): full placement time (median of several runs), the time
//! of one incremental node loss and one join (median over several nodes), movement as a
//! ratio to the optimum (loss: the lost node's slots; join: S/(N+1)), and max/avg load.

use std::hint::black_box;
use std::time::{Duration, Instant};

use knit_scheduler::placement::{Placement, PlacementConfig, Placer, place};
use knit_scheduler::{NodeId, NodeView, ServiceSpec};

fn node(i: u64) -> NodeView {
    let id = format!(
        "{:016x}{:016x}",
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        i ^ 0x5bd1_e995
    );
    NodeView::new(NodeId::new(id).expect("non-empty"))
}

fn cluster(nodes: usize, slots: usize) -> (Vec<NodeView>, Vec<ServiceSpec>) {
    let views = (0..nodes as u64).map(node).collect();
    let services = (0..slots / 10)
        .map(|i| {
            let mut s = ServiceSpec::docker(&format!("svc-{i:05}"), "img");
            s.mode = knit_scheduler::spec::Mode::Replicated { replicas: 10 };
            s
        })
        .collect();
    (views, services)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn max_over_avg(p: &Placement, slots: usize) -> f64 {
    let loads = p.loads();
    let max = loads.values().copied().max().unwrap_or(0) as f64;
    max / (slots as f64 / loads.len().max(1) as f64)
}

struct Incremental {
    op: Duration,
    op_and_read: Duration,
    movement: f64,
    fallbacks: u64,
}

/// Applies `change` to clones of `base` for several `targets`; medians and mean movement.
fn incremental<T: Clone>(
    base: &Placer,
    before: &Placement,
    targets: &[T],
    change: impl Fn(&mut Placer, T),
    optimum: impl Fn(&T) -> f64,
) -> Incremental {
    let (mut op, mut both, mut moved, mut best, mut fallbacks) = (vec![], vec![], 0.0, 0.0, 0);
    for t in targets {
        let mut p = base.clone();
        let start = Instant::now();
        change(&mut p, t.clone());
        op.push(start.elapsed());
        let after = black_box(p.placement());
        both.push(start.elapsed());
        moved += after.moves_from(before) as f64;
        best += optimum(t);
        fallbacks += p.full_recomputes();
    }
    Incremental {
        op: median(op),
        op_and_read: median(both),
        movement: moved / best,
        fallbacks,
    }
}

/// Losses and joins measured per size; movement is averaged over them (one join's share
/// varies by about 1/sqrt(S/N)).
const SAMPLES: usize = 25;

fn run(nodes: usize, slots: usize, runs: usize, load_factor: f64) {
    let (views, services) = cluster(nodes, slots);
    let config = PlacementConfig { load_factor };
    let times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(place(&views, &services, &config));
            start.elapsed()
        })
        .collect();
    let placed = place(&views, &services, &config);
    let base = Placer::new(&views, &services, &config);
    assert_eq!(base.placement(), placed);
    let lost: Vec<NodeId> = views
        .iter()
        .step_by(nodes / SAMPLES)
        .take(SAMPLES)
        .map(|v| v.id.clone())
        .collect();
    let loss = incremental(
        &base,
        &placed,
        &lost,
        |p, id| p.node_lost(&id),
        |id| placed.slots_on(id).len() as f64,
    );
    let joiners: Vec<NodeView> = (0..SAMPLES as u64).map(|i| node(1_000_000 + i)).collect();
    let optimum = slots as f64 / (nodes + 1) as f64;
    let join = incremental(
        &base,
        &placed,
        &joiners,
        |p, v| p.node_joined(v),
        |_| optimum,
    );
    println!(
        "c={load_factor:<4} {nodes:>5} x {slots:>6} | full {:>9} (min {:>9}) | loss {:>8} ({:>8} with read) | join {:>8} ({:>8} with read) | loss move {:.2}x | join move {:.2}x | max/avg {:.2} | bound {} | fallbacks {}",
        ms(median(times.clone())),
        ms(times.iter().copied().min().unwrap_or_default()),
        ms(loss.op),
        ms(loss.op_and_read),
        ms(join.op),
        ms(join.op_and_read),
        loss.movement,
        join.movement,
        max_over_avg(&placed, slots),
        placed.load_bound(),
        loss.fallbacks + join.fallbacks,
    );
}

fn main() {
    println!(
        "c = load factor; nodes x slots | full placement (median) | one node lost / joined, incremental (median of {SAMPLES}) | movement / optimum (mean of {SAMPLES}) | load"
    );
    for (nodes, slots, runs) in [(100, 1_000, 15), (1_000, 10_000, 11), (5_000, 50_000, 5)] {
        run(nodes, slots, runs, 1.25);
    }
    println!("where a loss or a join moves the bound itself (961 <-> 962 nodes: bound 14 <-> 13):");
    run(961, 10_000, 5, 1.25);
    run(962, 10_000, 5, 1.25);
}
