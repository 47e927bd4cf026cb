//! `knit-sim`: run a scenario, or plan capacity, with knit's real membership and placement
//! code in virtual time.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use knit_sim::Scenario;
use knit_sim::engine::Engine;
use knit_sim::flags::{self, ClusterFlags, RunFlags};
use knit_sim::model::MembershipKind;
use knit_sim::plan::{PlanAnswer, PlanRequest, failures_survived, plan_with};
use knit_sim::progress::{Meter, Progress, Silent, run_with};
use knit_sim::scenario::ServiceDef;
use knit_sim::scenario::secs_to_ms;

#[derive(Parser)]
#[command(
    name = "knit-sim",
    version,
    about = "knit's simulator: real SWIM and placement code in virtual time"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    /// `run` only: one HTML page with SVG charts.
    Html,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario (a file, flags, or a file with flags overriding it) and prints its
    /// report. Flags override the file: --hosts, --host-cpu, --host-memory, --profile,
    /// --membership, --store, --duration, --warmup, --loss, --latency-ms, --jitter-ms and
    /// --seed their field; --services/--service the whole service list; --kill/--partition
    /// the faults; --churn the churn.
    Run {
        /// The scenario (TOML); optional when --hosts is given.
        scenario: Option<PathBuf>,
        #[command(flatten)]
        cluster: ClusterFlags,
        #[command(flatten)]
        run: RunFlags,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Report format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Writes the report here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Finds the smallest cluster that survives `--failures` host losses, or, with --hosts N,
    /// how many losses a cluster of N survives; then simulates the heal times.
    Plan {
        #[command(flatten)]
        cluster: ClusterFlags,
        /// Hosts that may fail (default 1); not with --hosts, which answers it.
        #[arg(long, conflicts_with = "hosts")]
        failures: Option<usize>,
        /// The most of each host reservations may take.
        #[arg(long, default_value_t = 0.8)]
        target_utilisation: f64,
        /// Give up above this many hosts.
        #[arg(long, default_value_t = 200)]
        max_hosts: usize,
        /// Simulation runs at the answer.
        #[arg(long, default_value_t = 5)]
        runs: u64,
        /// First seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Report format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Measures simulated seconds per wall second and peak memory on a generated cluster,
    /// and the gossip per host the cores counted after the join.
    Bench(BenchFlags),
    /// Compares the membership model with the real core on generated clusters.
    Calibrate {
        /// Cluster sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "50,100,200,400")]
        sizes: Vec<usize>,
        /// Failure-detection profile: lan, wan or fast.
        #[arg(long, default_value = "lan")]
        profile: knit_mesh::Profile,
        /// Seeds per size.
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Output format (table or json).
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(clap::Args)]
struct BenchFlags {
    /// Hosts.
    #[arg(long)]
    hosts: usize,
    /// Simulated seconds (one host is killed at a third of it, unless --idle).
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Seconds for the hosts to join; speed after the join and gossip are measured after it.
    #[arg(long, default_value_t = 10.0)]
    warmup: f64,
    /// Slots per host (services of 10 replicas, no reservations).
    #[arg(long, default_value_t = 10)]
    slots_per_host: usize,
    /// How often each host calls `Membership::sync` (ms; the peer does every second).
    #[arg(long, default_value_t = 1_000)]
    sync_ms: u64,
    /// `real` (the membership core on every host) or `model` (calibrated).
    #[arg(long, default_value = "real")]
    membership: MembershipKind,
    /// Runs the whole node core (membership, store, anti-entropy) on every host, and
    /// writes a spec's worth of bytes at half time (`store = true`).
    #[arg(long)]
    store: bool,
    /// No kill and no write: the cluster stays idle after the join, for its idle cost.
    #[arg(long)]
    idle: bool,
}

fn main() -> std::process::ExitCode {
    match execute(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("knit-sim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            scenario,
            cluster,
            run,
            seed,
            format,
            out,
        } => {
            let base = match &scenario {
                None => None,
                Some(path) => {
                    let text = read(path)?;
                    let parsed = Scenario::from_toml(&text)
                        .with_context(|| format!("in {}", path.display()))?;
                    Some(parsed)
                }
            };
            let scenario = flags::scenario(base, &cluster, &run, catalogue(&cluster)?)?;
            let mut progress = progress();
            let report = run_with(&scenario, seed, &scenario.name, progress.as_mut());
            progress.done();
            let report = report?;
            let text = match format {
                Format::Table => report.table(),
                Format::Json => report.json(),
                Format::Html => knit_sim::html::page(&report),
            };
            emit(&text, out)
        }
        Command::Plan {
            cluster,
            failures,
            target_utilisation,
            max_hosts,
            runs,
            seed,
            format,
        } => {
            let (Some(host_cpu), Some(host_memory)) = (cluster.host_cpu, &cluster.host_memory)
            else {
                anyhow::bail!(
                    "plan needs the host size: give --host-cpu CORES and --host-memory SIZE, e.g. --host-cpu 8 --host-memory 32G"
                );
            };
            let request = PlanRequest {
                host_cpu,
                host_memory: host_memory.clone(),
                services: cluster
                    .service_list(catalogue(&cluster)?)
                    .unwrap_or_default(),
                failures: failures.unwrap_or(1),
                target_utilisation,
                max_hosts,
                runs,
                seed,
                profile: cluster.profile.unwrap_or_default(),
            };
            let mut progress = progress();
            let answer = match cluster.hosts {
                Some(hosts) => failures_survived(&request, hosts, progress.as_mut()),
                None => plan_with(&request, progress.as_mut()),
            };
            // Ends the meter's line if the plan failed halfway.
            progress.done();
            let answer = answer?;
            let text = match format {
                Format::Json => serde_json::to_string_pretty(&answer)? + "\n",
                Format::Html => anyhow::bail!("plan prints table or json; html is for run"),
                Format::Table => plan_table(&answer, cluster.hosts.is_some(), target_utilisation),
            };
            emit(&text, None)
        }
        Command::Bench(flags) => bench(&flags),
        Command::Calibrate {
            sizes,
            profile,
            seeds,
            format,
        } => calibrate(&sizes, profile, seeds, format),
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The `--services` file's list, if one was given.
fn catalogue(cluster: &ClusterFlags) -> anyhow::Result<Option<Vec<ServiceDef>>> {
    let Some(path) = &cluster.services else {
        return Ok(None);
    };
    let services =
        flags::catalogue(&read(path)?).with_context(|| format!("in {}", path.display()))?;
    Ok(Some(services))
}

/// A meter on stderr when it is a terminal; silence otherwise.
fn progress() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Meter::new(std::io::stderr()))
    } else {
        Box::new(Silent)
    }
}

fn failures(k: usize) -> String {
    if k == 1 {
        "1 failure".to_owned()
    } else {
        format!("{k} failures")
    }
}

/// The plan answer as text: the smallest cluster, or (`given`) the failures a cluster survives.
fn plan_table(answer: &PlanAnswer, given: bool, target_utilisation: f64) -> String {
    let (hosts, k, percent) = (answer.hosts, answer.failures, target_utilisation * 100.0);
    let headline = if given {
        let next = if k + 1 >= hosts {
            "losing every host but one still fits".to_owned()
        } else {
            format!("{} leave slots pending", failures(k + 1))
        };
        format!(
            "{hosts} hosts survive {} under {percent:.0}% reserved ({} failure sets of {k} placed with no pending slot; {next})\n",
            failures(k),
            answer.failure_sets_checked
        )
    } else {
        format!(
            "smallest cluster: {hosts} hosts (survives {k} failures under {percent:.0}% reserved; {} failure sets placed with no pending slot)\n",
            answer.failure_sets_checked
        )
    };
    if answer.runs == 0 {
        return headline + "(no failure to survive: nothing simulated)\n";
    }
    let (d, h) = (&answer.detection_ms, &answer.heal_ms);
    format!(
        "{headline}\
         detection: p50 {} / p90 {} / p99 {} / max {} ms (n={})\n\
         heal:      p50 {} / p90 {} / p99 {} / max {} ms (n={}, unhealed {})\n\
         ({} simulated runs, {k} kills each, real foca + real placement)\n",
        d.p50,
        d.p90,
        d.p99,
        d.max,
        d.count,
        h.p50,
        h.p90,
        h.p99,
        h.max,
        h.count,
        answer.unhealed,
        answer.runs,
    )
}

fn emit(text: &str, out: Option<PathBuf>) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => write_stdout(text),
    }
}

/// Writes `text` to stdout; a reader that went away (`| head`) ends the output quietly.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn calibrate(
    sizes: &[usize],
    profile: knit_mesh::Profile,
    seeds: u64,
    format: Format,
) -> anyhow::Result<()> {
    if matches!(format, Format::Table) {
        write_stdout(&format!(
            "{:>6} {:>22} {:>22} {:>7} {:>22} {:>22} {:>7}\n",
            "hosts",
            "real detect p50/p90",
            "model detect p50/p90",
            "error",
            "real heal p50/p90",
            "model heal p50/p90",
            "error"
        ))?;
    }
    let mut rows = Vec::new();
    for &hosts in sizes {
        let c = knit_sim::calibrate::compare(hosts, profile, seeds)?;
        if matches!(format, Format::Table) {
            let pair = |d: &knit_sim::report::Distribution| format!("{} / {} ms", d.p50, d.p90);
            write_stdout(&format!(
                "{:>6} {:>22} {:>22} {:>+6.0}% {:>22} {:>22} {:>+6.0}%\n",
                hosts,
                pair(&c.real_detection_ms),
                pair(&c.model_detection_ms),
                c.detection_error() * 100.0,
                pair(&c.real_heal_ms),
                pair(&c.model_heal_ms),
                c.heal_error() * 100.0
            ))?;
        }
        rows.push(c);
    }
    if !matches!(format, Format::Table) {
        write_stdout(&(serde_json::to_string_pretty(&rows)? + "\n"))?;
    }
    Ok(())
}

fn bench(flags: &BenchFlags) -> anyhow::Result<()> {
    let BenchFlags {
        hosts,
        seconds,
        warmup,
        slots_per_host,
        sync_ms,
        membership,
        store,
        idle,
    } = *flags;
    let mut faults = Vec::new();
    if !idle {
        let kill = (seconds / 3.0).max(warmup);
        faults.push(format!("{{ kind = \"kill\", at_s = {kill}, host = 1 }}"));
        if store {
            faults.push(format!(
                "{{ kind = \"write\", at_s = {}, host = 2, key = \"svc/s0\", bytes = 600 }}",
                (seconds / 2.0).max(warmup)
            ));
        }
    }
    let services = (0..(hosts * slots_per_host).div_ceil(10))
        .map(|i| format!("[[services]]\nname = \"s{i}\"\nreplicas = 10\n"))
        .collect::<String>();
    let text = format!(
        "name = \"bench-{hosts}\"\nduration_s = {seconds}\nwarmup_s = {warmup}\nstep_budget = 4000000000\nsync_ms = {sync_ms}\nmembership = \"{membership}\"\nstore = {store}\n\
         faults = [{}]\n\
         [hosts]\ncount = {hosts}\ncpu = 8\nmemory = \"32G\"\n{services}",
        faults.join(", ")
    );
    let scenario = Scenario::from_toml(&text)?;
    let warm_ms = secs_to_ms(scenario.warmup_s);
    let started = std::time::Instant::now();
    let mut engine = Engine::new(&scenario, scenario.seed)?;
    engine.advance(warm_ms)?;
    let join_wall = started.elapsed().as_secs_f64();
    engine.advance(u64::MAX)?;
    let wall = started.elapsed().as_secs_f64();
    let steady_wall = wall - join_wall;
    let report = engine.finish_report(&scenario);
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "VmHWM: unknown".to_owned());
    let steady_s = seconds - scenario.warmup_s;
    write_stdout(&format!(
        "hosts {hosts}: whole run {seconds} sim s in {wall:.2} wall s = {:.2} sim s / wall s; \
         join ({} sim s) {join_wall:.2} wall s; after the join {steady_s} sim s in {steady_wall:.2} wall s = {:.2} sim s / wall s; \
         {} events ({} queued at end); {hwm}; detection {:?} ms, heal {:?} ms; store converged {}; \
         views divergent at end {}\n{}",
        seconds / wall,
        scenario.warmup_s,
        steady_s / steady_wall,
        report.steps,
        report.events_queued_at_end,
        report.kill_log.first().and_then(|k| k.detection_ms),
        report.kill_log.first().and_then(|k| k.heal_ms),
        report
            .store_converged_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("after {ms} ms")),
        report.divergent_views_at_end,
        bench_traffic(&report.traffic),
    ))
}

/// The bench's gossip lines: after the join, per host per second, from the cores' counters.
fn bench_traffic(traffic: &knit_sim::traffic::TrafficReport) -> String {
    traffic
        .rows()
        .into_iter()
        .map(|(label, value)| format!("  {label:<22} {value}\n"))
        .collect()
}
