//! `knit-sim`: run a scenario, or plan capacity, with knit's real membership and placement
//! code in virtual time.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use knit_sim::engine::Engine;
use knit_sim::plan::{PlanRequest, plan};
use knit_sim::scenario::ServiceDef;
use knit_sim::scenario::secs_to_ms;
use knit_sim::{Scenario, run};
use serde::Deserialize;

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
    /// Runs a scenario file and prints its report.
    Run {
        /// The scenario (TOML).
        scenario: PathBuf,
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
    /// Finds the smallest cluster that survives `--failures` host losses, and its heal times.
    Plan {
        /// Cores per host.
        #[arg(long)]
        host_cpu: f64,
        /// Memory per host (`32G`).
        #[arg(long)]
        host_memory: String,
        /// A TOML file of `[[services]]` (name, replicas, cpu, memory).
        #[arg(long)]
        services: PathBuf,
        /// Hosts that may fail.
        #[arg(long, default_value_t = 1)]
        failures: usize,
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
        /// Failure-detection profile: lan, wan or fast.
        #[arg(long, default_value = "lan")]
        profile: knit_mesh::Profile,
        /// Report format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Measures simulated seconds per wall second and peak memory on a generated cluster.
    Bench {
        /// Hosts.
        #[arg(long)]
        hosts: usize,
        /// Simulated seconds (one host is killed at a third of it).
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Slots per host (services of 10 replicas, no reservations).
        #[arg(long, default_value_t = 10)]
        slots_per_host: usize,
        /// How often each host calls `Membership::sync` (ms; the peer does every second).
        #[arg(long, default_value_t = 1_000)]
        sync_ms: u64,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalogue {
    services: Vec<ServiceDef>,
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
            seed,
            format,
            out,
        } => {
            let text = std::fs::read_to_string(&scenario)
                .with_context(|| format!("reading {}", scenario.display()))?;
            let parsed =
                Scenario::from_toml(&text).with_context(|| format!("in {}", scenario.display()))?;
            let report = run(&parsed, seed)?;
            let text = match format {
                Format::Table => report.table(),
                Format::Json => report.json(),
                Format::Html => knit_sim::html::page(&report),
            };
            emit(&text, out)
        }
        Command::Plan {
            host_cpu,
            host_memory,
            services,
            failures,
            target_utilisation,
            max_hosts,
            runs,
            seed,
            profile,
            format,
        } => {
            let text = std::fs::read_to_string(&services)
                .with_context(|| format!("reading {}", services.display()))?;
            let catalogue: Catalogue =
                toml::from_str(&text).with_context(|| format!("in {}", services.display()))?;
            let answer = plan(&PlanRequest {
                host_cpu,
                host_memory,
                services: catalogue.services,
                failures,
                target_utilisation,
                max_hosts,
                runs,
                seed,
                profile,
            })?;
            let text = match format {
                Format::Json => serde_json::to_string_pretty(&answer)?,
                Format::Html => anyhow::bail!("plan prints table or json; html is for run"),
                Format::Table => format!(
                    "smallest cluster: {} hosts (survives {} failures under {:.0}% reserved; {} failure sets placed with no pending slot)\n\
                     detection: p50 {} / p90 {} / p99 {} / max {} ms (n={})\n\
                     heal:      p50 {} / p90 {} / p99 {} / max {} ms (n={}, unhealed {})\n\
                     ({} simulated runs, {} kills each, real foca + real placement)\n",
                    answer.hosts,
                    answer.failures,
                    target_utilisation * 100.0,
                    answer.failure_sets_checked,
                    answer.detection_ms.p50,
                    answer.detection_ms.p90,
                    answer.detection_ms.p99,
                    answer.detection_ms.max,
                    answer.detection_ms.count,
                    answer.heal_ms.p50,
                    answer.heal_ms.p90,
                    answer.heal_ms.p99,
                    answer.heal_ms.max,
                    answer.heal_ms.count,
                    answer.unhealed,
                    answer.runs,
                    answer.failures
                ),
            };
            emit(&text, None)
        }
        Command::Bench {
            hosts,
            seconds,
            slots_per_host,
            sync_ms,
        } => bench(hosts, seconds, slots_per_host, sync_ms),
    }
}

fn emit(text: &str, out: Option<PathBuf>) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn bench(hosts: usize, seconds: f64, slots_per_host: usize, sync_ms: u64) -> anyhow::Result<()> {
    let services = (0..(hosts * slots_per_host).div_ceil(10))
        .map(|i| format!("[[services]]\nname = \"s{i}\"\nreplicas = 10\n"))
        .collect::<String>();
    let text = format!(
        "name = \"bench-{hosts}\"\nduration_s = {seconds}\nwarmup_s = 10\nstep_budget = 4000000000\nsync_ms = {sync_ms}\n\
         faults = [{{ kind = \"kill\", at_s = {kill}, host = 1 }}]\n\
         [hosts]\ncount = {hosts}\ncpu = 8\nmemory = \"32G\"\n{services}",
        kill = (seconds / 3.0).max(10.0)
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
    println!(
        "hosts {hosts}: whole run {seconds} sim s in {wall:.2} wall s = {:.2} sim s / wall s; \
         join ({} sim s) {join_wall:.2} wall s; after the join {steady_s} sim s in {steady_wall:.2} wall s = {:.2} sim s / wall s; \
         {} events ({} queued at end); {hwm}; detection {:?} ms, heal {:?} ms",
        seconds / wall,
        scenario.warmup_s,
        steady_s / steady_wall,
        report.steps,
        report.events_queued_at_end,
        report.kill_log.first().and_then(|k| k.detection_ms),
        report.kill_log.first().and_then(|k| k.heal_ms),
    );
    Ok(())
}
