//! Placement benchmark: `cargo bench -p knit-scheduler --bench placement`.
//!
//! Prints, for clusters of N nodes and S replicated slots (services of R replicas, no
//! constraints, unknown capacity): full placement time (median of several runs), movement
//! as a ratio to the optimum when one node is lost and when one joins (loss: the lost
//! node's slots; join: S/(N+1)), each placement computed in full as the peer computes it,
//! the slots that move when one service scales by a replica (optimum 0), and max/avg load. The first rows are large clusters where a service's replicas rarely
//! rank one node first; the last ones are small clusters where spread binds (R close to N).

use std::hint::black_box;
use std::time::{Duration, Instant};

use knit_scheduler::placement::{Placement, PlacementConfig, place};
use knit_scheduler::{NodeId, NodeView, ServiceSpec};

fn node(i: u64) -> NodeView {
    let id = format!(
        "{:016x}{:016x}",
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        i ^ 0x5bd1_e995
    );
    NodeView::new(NodeId::new(id).expect("non-empty"))
}

fn cluster(nodes: usize, slots: usize, replicas: u32) -> (Vec<NodeView>, Vec<ServiceSpec>) {
    let views = (0..nodes as u64).map(node).collect();
    let services = (0..slots / replicas as usize)
        .map(|i| {
            let mut s = ServiceSpec::docker(&format!("svc-{i:05}"), "img");
            s.mode = knit_scheduler::spec::Mode::Replicated { replicas };
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

/// Losses and joins measured per size; movement is averaged over them (one join's share
/// varies by about 1/sqrt(S/N)).
const SAMPLES: usize = 25;

/// Movement from `before` over the optimum, both summed over `changes` (each a node list
/// and its optimum).
fn movement(
    before: &Placement,
    services: &[ServiceSpec],
    config: &PlacementConfig,
    changes: impl Iterator<Item = (Vec<NodeView>, f64)>,
) -> f64 {
    let (mut moved, mut best) = (0.0, 0.0);
    for (views, optimum) in changes {
        moved += place(&views, services, config).moves_from(before) as f64;
        best += optimum;
    }
    moved / best
}

/// Slots that were placed before and sit elsewhere after one service scales by one
/// replica up or down (the optimum is 0), averaged over up to `SAMPLES` services each way.
fn scale_moves(
    views: &[NodeView],
    services: &[ServiceSpec],
    config: &PlacementConfig,
    before: &Placement,
) -> f64 {
    let samples = SAMPLES.min(services.len());
    let mut moved = 0;
    for i in (0..services.len())
        .step_by(services.len() / samples)
        .take(samples)
    {
        for delta in [1i64, -1] {
            let mut scaled = services.to_vec();
            let replicas = (i64::from(scaled[i].replicas()) + delta).max(0) as u32;
            scaled[i].mode = knit_scheduler::spec::Mode::Replicated { replicas };
            moved += place(views, &scaled, config).moves_from(before);
        }
    }
    moved as f64 / (2 * samples) as f64
}

fn run(nodes: usize, slots: usize, replicas: u32, runs: usize, load_factor: f64) {
    let (views, services) = cluster(nodes, slots, replicas);
    let config = PlacementConfig { load_factor };
    let times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(place(&views, &services, &config));
            start.elapsed()
        })
        .collect();
    let placed = place(&views, &services, &config);
    let samples = SAMPLES.min(nodes);
    let losses = (0..nodes).step_by(nodes / samples).take(samples).map(|i| {
        let lost = placed.slots_on(&views[i].id).len() as f64;
        let mut fewer = views.clone();
        fewer.remove(i);
        (fewer, lost)
    });
    let loss = movement(&placed, &services, &config, losses);
    let optimum = slots as f64 / (nodes + 1) as f64;
    let joins = (0..SAMPLES as u64).map(|i| {
        let mut more = views.clone();
        more.push(node(1_000_000 + i));
        (more, optimum)
    });
    let join = movement(&placed, &services, &config, joins);
    let scale = scale_moves(&views, &services, &config, &placed);
    println!(
        "c={load_factor:<4} {nodes:>5} x {slots:>6} (R={replicas:>2}) | full {:>9} (min {:>9}) | loss move {loss:.2}x | join move {join:.2}x | scale moves {scale:.2} | max/avg {:.2} | bound {}",
        ms(median(times.clone())),
        ms(times.iter().copied().min().unwrap_or_default()),
        max_over_avg(&placed, slots),
        placed.load_bound(),
    );
}

fn main() {
    println!(
        "c = load factor; nodes x slots (replicas per service) | full placement (median) | movement / optimum (mean over {SAMPLES} losses and {SAMPLES} joins, or one loss per node) | load"
    );
    for (nodes, slots, runs) in [(100, 1_000, 15), (1_000, 10_000, 11), (5_000, 50_000, 5)] {
        run(nodes, slots, 10, runs, 1.25);
    }
    println!("where a loss or a join moves the bound itself (961 <-> 962 nodes: bound 14 <-> 13):");
    run(961, 10_000, 10, 5, 1.25);
    run(962, 10_000, 10, 5, 1.25);
    println!("where spread binds (replicas per service close to the node count):");
    for (nodes, slots, replicas) in [(3, 300, 3), (5, 500, 5), (10, 1_000, 10), (20, 1_000, 10)] {
        run(nodes, slots, replicas, 15, 1.25);
    }
}
