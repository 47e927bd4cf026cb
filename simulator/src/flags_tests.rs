//! Flags through clap, as a user types them, to the scenario they make.

use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    scenario: Option<String>,
    #[command(flatten)]
    cluster: ClusterFlags,
    #[command(flatten)]
    run: RunFlags,
}

fn parse(args: &str) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("knit-sim").chain(args.split_whitespace()))
}

fn build(args: &str) -> Result<Scenario, FlagError> {
    let cli = parse(args).unwrap();
    let base = cli.scenario.map(|path| {
        let text = match path.as_str() {
            "kill-one.toml" => include_str!("../scenarios/kill-one.toml"),
            other => panic!("no test file {other}"),
        };
        Scenario::from_toml(text).unwrap()
    });
    scenario(base, &cli.cluster, &cli.run, None)
}

fn kills(s: &Scenario) -> Vec<(f64, usize)> {
    s.faults
        .iter()
        .filter_map(|f| match f {
            Fault::Kill { at_s, host, .. } => Some((*at_s, *host)),
            _ => None,
        })
        .collect()
}

#[test]
fn flags_alone_make_the_scenario_they_say() {
    let s = build(
        "--hosts 50 --host-cpu 8 --host-memory 32G --service web:30:0.5:512M \
         --service db:3:2:4G --profile lan --kill 2 --at 20 --duration 60 --loss 0.01 \
         --latency-ms 1",
    )
    .unwrap();
    assert_eq!(s.hosts.count, 50);
    assert!((s.hosts.cpu - 8.0).abs() < f64::EPSILON);
    assert_eq!(s.hosts.memory, "32G");
    let services: Vec<_> = s
        .services
        .iter()
        .map(|d| (d.name.as_str(), d.replicas, d.cpu, d.memory.as_str()))
        .collect();
    assert_eq!(services, [("web", 30, 0.5, "512M"), ("db", 3, 2.0, "4G")]);
    assert_eq!(s.profile, Profile::Lan);
    assert_eq!(kills(&s), [(20.0, 0), (20.0, 25)]);
    assert_eq!(s.faults.len(), 2, "no restart without --recover-after");
    assert!((s.duration_s - 60.0).abs() < f64::EPSILON);
    assert!((s.network.loss - 0.01).abs() < f64::EPSILON);
    assert_eq!(s.network.latency_ms, 1);
    assert!((s.warmup_s - 10.0).abs() < f64::EPSILON, "the file default");
    assert_eq!(s.name, "flags-50-hosts");
    assert_eq!(s.membership, MembershipKind::Real);
    let s = build("--hosts 2000 --membership model --kill 5").unwrap();
    assert_eq!(s.membership, MembershipKind::Model);
    assert!(!s.store);
    assert!(build("--hosts 20 --store --partition 5").unwrap().store);
}

#[test]
fn defaults_fill_what_flags_leave_out() {
    let s = build("--hosts 4 --kill 1 --recover-after 15").unwrap();
    assert_eq!(s.hosts.memory, HOST_MEMORY_DEFAULT);
    assert!(s.services.is_empty());
    assert_eq!(kills(&s), [(20.0, 0)], "10 s after the warm-up");
    assert!(matches!(s.faults[1], Fault::Restart { at_s, host: 0 } if (at_s - 35.0).abs() < 1e-9));
    // 40 s after the restart at 35 s.
    assert!((s.duration_s - 75.0).abs() < 1e-9, "{}", s.duration_s);
}

#[test]
fn flags_override_the_file_and_keep_the_rest() {
    let s = build("kill-one.toml --hosts 7 --loss 0.05 --service solo:2").unwrap();
    assert_eq!(s.name, "kill-one");
    assert_eq!(s.seed, 7);
    assert_eq!(s.hosts.count, 7);
    assert!((s.network.loss - 0.05).abs() < f64::EPSILON);
    assert_eq!(s.network.jitter_ms, 1, "kept from the file");
    assert_eq!(s.services.len(), 1, "--service replaces the list");
    assert_eq!(s.services[0].memory, "0");
    assert_eq!(kills(&s), [(20.0, 2)], "the file's faults stay");
    assert!((s.duration_s - 60.0).abs() < f64::EPSILON);

    let s = build("kill-one.toml --partition 2 --at 30 --recover-after 10").unwrap();
    assert!(
        kills(&s).is_empty(),
        "--partition replaces the file's faults"
    );
    assert!(matches!(&s.faults[0], Fault::Partition { groups, .. } if groups == &[vec![0, 1]]));
    assert!(matches!(s.faults[1], Fault::Heal { at_s } if (at_s - 40.0).abs() < 1e-9));
}

#[test]
fn churn_uses_recover_after_as_downtime() {
    let s = build("--hosts 10 --churn 4 --duration 120").unwrap();
    let churn = s.churn.unwrap();
    assert!((churn.kills_per_minute - 4.0).abs() < f64::EPSILON);
    assert!((churn.downtime_s - CHURN_DOWNTIME_DEFAULT_S).abs() < f64::EPSILON);
}

#[test]
fn a_flags_scenario_runs_like_a_file() {
    let s =
        build("--hosts 4 --service web:4:0.5:512M --profile fast --kill 1 --duration 45").unwrap();
    let report = crate::engine::run(&s, Some(3)).unwrap();
    assert_eq!(report.kills, 1);
    assert_eq!(report.heal_ms.count, 1, "{}", report.table());
    assert!(report.invariant_violations.is_empty(), "{}", report.table());
}

#[test]
fn bad_flag_values_say_what_a_good_one_looks_like() {
    for (args, says) in [
        ("--hosts 0", "whole number from 1"),
        ("--hosts many", "whole number from 1"),
        ("--host-cpu=-1", "positive number"),
        ("--host-memory lots", "512M"),
        ("--service web", "NAME:REPLICAS"),
        ("--service web:x", "not a whole number"),
        ("--service web:3:fast", "core count"),
        ("--service web:3:1:12Q", "512M"),
        ("--service web:3:1:1G:extra", "NAME:REPLICAS"),
        ("--loss 1.5", "[0, 1)"),
        ("--at soon", "seconds"),
        ("--churn 0", "kills per minute"),
        ("--profile lab", "lan, wan or fast"),
        ("--membership foca", "real or model"),
    ] {
        let err = parse(args).err().unwrap_or_else(|| panic!("{args} parsed"));
        assert!(err.to_string().contains(says), "{args}: {err}");
    }
}

#[test]
fn bad_flag_combinations_say_what_to_do() {
    for (args, says) in [
        ("", "--hosts N"),
        ("--hosts 3 --kill 3", "between 1 and 2"),
        ("--hosts 3 --partition 0", "between 1 and 2"),
        ("--hosts 3 --at 20", "--kill or --partition"),
        ("--hosts 3 --kill 1 --at 5", "inside the warm-up"),
        ("kill-one.toml --hosts 2", "host 2"),
    ] {
        let err = build(args).unwrap_err().to_string();
        assert!(err.contains(says), "{args}: {err}");
    }
}

#[test]
fn a_services_file_and_service_flags_combine() {
    let catalogue = catalogue(include_str!("../scenarios/catalogue.toml")).unwrap();
    let cli = parse("--hosts 10 --service extra:1").unwrap();
    let s = scenario(None, &cli.cluster, &cli.run, Some(catalogue)).unwrap();
    let names: Vec<_> = s.services.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["blog", "api", "db-proxy", "extra"]);
    assert!(super::catalogue("[[services]]\nname = 1").is_err());
}
