//! The engine through its one entry point, [`run`], on the example scenarios.

use super::*;
use crate::plan::{PlanRequest, plan};
use crate::scenario::ServiceDef;

fn scenario(text: &str) -> Scenario {
    Scenario::from_toml(text).unwrap()
}

/// Five hosts, `blog` (6 replicas) and `api` (4); host 2 (blog.6, api.3) dies at 20 s.
/// The kill moves one slot more than host 2 held: blog's replicas spread one per host with
/// a sixth doubled, so blog.6 falls back to host 3, which it ranks above blog.1 does, and
/// blog.1 doubles up on host 1 (spread binds; see "Movement" in the scheduler's placement
/// doc). Without spread every slot but the killed host's stayed.
fn kill_one() -> Scenario {
    scenario(include_str!("../../scenarios/kill-one.toml"))
}

#[test]
fn same_seed_same_report_bit_for_bit() {
    let s = kill_one();
    let a = run(&s, Some(5)).unwrap().json();
    let b = run(&s, Some(5)).unwrap().json();
    assert_eq!(a, b);
    let c = run(&s, Some(6)).unwrap().json();
    assert_ne!(a, c, "a different seed should change something");
}

#[test]
fn a_kill_is_detected_and_healed_within_the_profile_bound() {
    let s = kill_one();
    let report = run(&s, None).unwrap();
    assert_eq!(report.kills, 1);
    assert_eq!(report.detection_ms.count, 1, "{}", report.table());
    assert!(
        report.detection_ms.max <= report.detection_bound_ms,
        "{}",
        report.table()
    );
    // Detection, then the next agent round (a departure needs no settle window), then the
    // slowest container start.
    let heal_bound = report.detection_bound_ms + ROUND_EVERY_MS + s.containers.start_max_ms;
    assert_eq!(report.heal_ms.count, 1);
    assert!(report.heal_ms.max <= heal_bound, "{}", report.table());
    assert_eq!(report.moves, report.moves_optimum + 1, "{}", report.table());
    assert_eq!(report.false_positives, 0);
    assert!(report.invariant_violations.is_empty(), "{}", report.table());
    assert_eq!(report.divergent_views_at_end, 0);
    assert!(report.messages_per_host_s > 0.0 && report.bytes_per_host_s > 0.0);
}

#[test]
fn a_killed_peer_whose_machine_refuses_its_port_is_found_sooner() {
    // The same kill, with the machine lost (silent) and with only the peer process dead
    // (its machine refuses the port): the prober's port check turns a 500 ms probe period
    // into a 200 ms probe timeout, seed by seed.
    let silent = kill_one();
    let refusing = scenario(&include_str!("../../scenarios/kill-one.toml").replace(
        "at_s = 20\nhost = 2\n",
        "at_s = 20\nhost = 2\nrefuses = true\n",
    ));
    assert!(matches!(
        refusing.faults[0],
        Fault::Kill { refuses: true, .. }
    ));
    for seed in 1..=5 {
        let silent = run(&silent, Some(seed)).unwrap();
        let refused = run(&refusing, Some(seed)).unwrap();
        assert_eq!(refused.detection_ms.count, 1, "{}", refused.table());
        assert!(
            refused.detection_ms.max + 200 <= silent.detection_ms.max,
            "seed {seed}: detection {} ms refused, {} ms silent",
            refused.detection_ms.max,
            silent.detection_ms.max
        );
        assert_eq!(refused.false_positives, 0);
    }
    let model = include_str!("../../scenarios/kill-one.toml")
        .replace(
            "at_s = 20\nhost = 2\n",
            "at_s = 20\nhost = 2\nrefuses = true\n",
        )
        .replace(
            "profile = \"fast\"",
            "profile = \"fast\"\nmembership = \"model\"",
        );
    let err = Scenario::from_toml(&model).unwrap_err().to_string();
    assert!(err.contains("refuses"), "{err}");
}

#[test]
fn partitions_heal_and_every_slot_runs_once() {
    let s = scenario(include_str!("../../scenarios/partition.toml"));
    let report = run(&s, None).unwrap();
    assert!(
        report.partition_downs > 0,
        "the split was seen: {}",
        report.table()
    );
    assert_eq!(report.false_positives, 0, "{}", report.table());
    assert_eq!(report.divergent_views_at_end, 0, "{}", report.table());
    assert!(report.invariant_violations.is_empty(), "{}", report.table());
    assert!(report.pending.is_empty());
}

#[test]
fn a_restarted_host_rejoins_with_a_new_epoch_and_takes_its_share() {
    let s = kill_one();
    let report = run(&s, None).unwrap();
    assert_eq!(report.live_hosts_at_end, 5);
    assert!(report.invariant_violations.is_empty(), "{}", report.table());
    // It took its slots back: the placement is the one the run started with.
    assert!(report.container_starts > report.moves_optimum as u64);
    assert_eq!(report.utilisation_after, report.utilisation_before);
}

#[test]
fn the_step_budget_aborts_a_run() {
    let mut s = kill_one();
    s.step_budget = 1_000;
    let err = run(&s, None).unwrap_err();
    assert!(
        matches!(err, SimError::StepBudget { budget: 1_000, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("raise step_budget"));
}

#[test]
fn too_little_room_leaves_slots_pending_with_a_reason() {
    let mut s = kill_one();
    s.hosts.cpu = 1.0;
    let report = run(&s, None).unwrap();
    assert!(!report.pending.is_empty());
    assert!(report.pending[0].reason.contains("InsufficientResources"));
    assert!(report.invariant_violations.is_empty(), "{}", report.table());
}

#[test]
fn bad_scenarios_say_what_to_fix() {
    let mut text = include_str!("../../scenarios/kill-one.toml").replace("host = 2", "host = 9");
    let err = Scenario::from_toml(&text).unwrap_err().to_string();
    assert!(err.contains("host 9"), "{err}");
    text =
        include_str!("../../scenarios/kill-one.toml").replace("count = 5", "count = 5\nbogus = 1");
    assert!(Scenario::from_toml(&text).is_err());
}

#[test]
fn plan_answers_a_small_catalogue() {
    let services = vec![
        ServiceDef {
            name: "blog".into(),
            replicas: 6,
            cpu: 1.0,
            memory: "2G".into(),
            constraints: Vec::new(),
        },
        ServiceDef {
            name: "api".into(),
            replicas: 4,
            cpu: 2.0,
            memory: "4G".into(),
            constraints: Vec::new(),
        },
    ];
    let request = PlanRequest {
        host_cpu: 4.0,
        host_memory: "16G".into(),
        services,
        failures: 1,
        target_utilisation: 0.8,
        max_hosts: 50,
        runs: 2,
        seed: 1,
        profile: Profile::Fast,
    };
    let answer = plan(&request).unwrap();
    // 14 cores of reservations over hosts of 3.2 usable cores: at least 5 survivors.
    assert!(answer.hosts >= 6, "{answer:?}");
    assert!(
        crate::plan::fits_after_failures(
            &request
                .services
                .iter()
                .map(|s| s.spec().unwrap())
                .collect::<Vec<_>>(),
            knit_scheduler::Resources {
                cpu_millis: 3_200,
                memory_bytes: 13_743_895_347
            },
            answer.hosts - 1,
            1,
            1,
        )
        .is_none(),
        "one host fewer must not fit"
    );
    assert_eq!(answer.heal_ms.count, 2, "{answer:?}");
    assert_eq!(answer.unhealed, 0);
}

#[test]
fn the_membership_model_heals_kills_and_churn_and_says_it_is_a_model() {
    let mut s = kill_one();
    s.membership = MembershipKind::Model;
    let report = run(&s, Some(5)).unwrap();
    assert_eq!(report, run(&s, Some(5)).unwrap(), "deterministic");
    assert_eq!(report.membership, MembershipKind::Model);
    assert!(report.engine.contains("MODEL"), "{}", report.engine);
    assert!(report.table().contains("detection (MODEL)"));
    assert_eq!(
        (
            report.kills,
            report.detection_ms.count,
            report.heal_ms.count
        ),
        (1, 1, 1)
    );
    assert!(
        report.detection_ms.max <= report.detection_bound_ms,
        "{}",
        report.table()
    );
    assert_eq!(report.moves, report.moves_optimum + 1, "{}", report.table());
    assert!(report.invariant_violations.is_empty(), "{}", report.table());
    assert_eq!(report.live_hosts_at_end, 5, "the killed host came back");
    assert_eq!(report.utilisation_after, report.utilisation_before);
    let mut churn = scenario(include_str!("../../scenarios/churn-wan-loss.toml"));
    churn.membership = MembershipKind::Model;
    churn.network.loss = 0.0;
    let report = run(&churn, None).unwrap();
    assert!(report.kills > 5, "{}", report.table());
    assert_eq!(report.live_hosts_at_end, 50, "{}", report.table());
    assert_eq!(report.divergent_views_at_end, 0, "{}", report.table());
    assert!(report.invariant_violations.is_empty(), "{}", report.table());
}

#[test]
fn the_membership_model_refuses_what_it_does_not_model() {
    let text = include_str!("../../scenarios/churn-wan-loss.toml").replace(
        "profile = \"lan\"",
        "profile = \"lan\"\nmembership = \"model\"",
    );
    let err = Scenario::from_toml(&text).unwrap_err().to_string();
    assert!(err.contains("membership = \"real\""), "{err}");
    let text = include_str!("../../scenarios/partition.toml")
        .replace("[hosts]", "membership = \"model\"\n\n[hosts]");
    assert!(Scenario::from_toml(&text).is_err());
}

#[test]
fn hosts_of_several_sizes_and_labels_take_what_their_constraints_allow() {
    let text = r#"
name = "mixed"
duration_s = 60
profile = "fast"
faults = [{ kind = "kill", at_s = 20, host = 5 }]

[hosts]
count = 4
cpu = 4
memory = "8G"
labels = { zone = "a" }

[[hosts.groups]]
count = 2
cpu = 16
memory = "64G"
labels = { zone = "b", disk = "ssd" }

[[services]]
name = "web"
replicas = 8
cpu = 0.5
memory = "512M"

[[services]]
name = "db"
replicas = 4
cpu = 4
memory = "16G"
constraints = ["node.labels.disk==ssd"]
"#;
    let s = scenario(text);
    assert_eq!(s.host_count(), 6);
    let report = run(&s, None).unwrap();
    assert!(report.invariant_violations.is_empty(), "{}", report.table());
    let cpu = |u: &crate::report::Utilisation, host: &str| {
        u.per_host.iter().find(|h| h.host == host).map(|h| h.cpu)
    };
    // db replicas (4 of 16 cores each) sit on the ssd hosts only, all four: at a node's load
    // bound (ceil(1.25 x 12 / 6) = 3 slots) constrained slots come first. Zone-a hosts
    // (4 cores) hold web only.
    let ssd: f64 = ["h0004", "h0005"]
        .iter()
        .map(|h| cpu(&report.utilisation_before, h).unwrap())
        .sum();
    assert!(ssd >= 1.0, "{ssd}\n{}", report.table());
    for host in ["h0000", "h0001", "h0002", "h0003"] {
        let used = cpu(&report.utilisation_before, host).unwrap();
        assert!(used <= 0.5, "{host}: {used}");
    }
    // After h0005 dies, its db replicas may only go to h0004, which takes three (its bound
    // is now ceil(1.25 x 12 / 5) = 3, all db); the fourth waits, with that reason.
    assert_eq!(cpu(&report.utilisation_after, "h0005"), None, "dead");
    assert_eq!(
        cpu(&report.utilisation_after, "h0004"),
        Some(0.75),
        "{}",
        report.table()
    );
    assert_eq!(report.pending.len(), 1, "{}", report.table());
    assert!(report.pending[0].slot.starts_with("db."));
    assert!(report.pending[0].reason.contains("LoadBound"));
    let bad = scenario_error(&text.replace("disk==ssd", "disk=ssd"));
    assert!(bad.contains("=="), "{bad}");
}

fn scenario_error(text: &str) -> String {
    Scenario::from_toml(text).unwrap_err().to_string()
}

/// The idle scenario at a size a test can run.
fn idle(hosts: usize) -> Scenario {
    let mut s = scenario(include_str!("../../scenarios/idle-1000.toml"));
    s.hosts.count = hosts;
    s.warmup_s = 10.0;
    s.duration_s = 40.0;
    s
}

#[test]
fn an_idle_cluster_reports_its_gossip_from_the_cores_counters() {
    let report = run(&idle(8), None).unwrap();
    let crate::traffic::TrafficReport::Counted(t) = &report.traffic else {
        panic!("not counted: {}", report.table());
    };
    // Eight hosts up for the whole 30 s window.
    assert_eq!(t.host_s, 240.0);
    assert!(t.gossip_bytes_per_host_s > 0.0, "{}", report.table());
    assert!(t.gossip_packets_per_host_s > 0.0);
    // Every packet sent is received (no loss, nobody down), but for those in flight at the
    // window's ends.
    let ratio = t.received_bytes_per_host_s / t.sent_bytes_per_host_s;
    assert!((0.95..=1.05).contains(&ratio), "{}", report.table());
    // Probes and their acks at least, and the kinds add up to the whole.
    let kinds: Vec<&str> = t.by_kind.iter().map(|k| k.kind.as_str()).collect();
    assert!(
        kinds.contains(&"ping") && kinds.contains(&"ack"),
        "{kinds:?}"
    );
    let sum: f64 = t.by_kind.iter().map(|k| k.bytes_out + k.bytes_in).sum();
    assert!((sum - t.gossip_bytes_per_host_s).abs() < 0.01 * sum);
    // The sent figure is the one the report has always given, over every host.
    assert!((t.sent_bytes_per_host_s - report.bytes_per_host_s).abs() < 0.01);
    // In sync, every exchange is one summary each way (64 buckets of 8 bytes), counted
    // by both sides.
    let sync = t
        .anti_entropy
        .as_ref()
        .expect("store = true runs anti-entropy");
    assert!(sync.exchanges_per_host_s > 0.0);
    assert!(
        (sync.summary_bytes_per_host_s - sync.exchanges_per_host_s * 2.0 * 512.0).abs() < 1.0,
        "{}",
        report.table()
    );
    assert!(report.table().contains("gossip (counted)"));
    assert!(report.json().contains("\"by_kind\""));
}

#[test]
fn a_write_after_a_partition_is_counted_as_anti_entropy_digests_and_deltas() {
    let s = scenario(include_str!("../../scenarios/store-partition.toml"));
    let report = run(&s, None).unwrap();
    let crate::traffic::TrafficReport::Counted(t) = &report.traffic else {
        panic!("not counted: {}", report.table());
    };
    let sync = t
        .anti_entropy
        .as_ref()
        .expect("store = true runs anti-entropy");
    assert!(sync.digest_bytes_per_host_s > 0.0, "{}", report.table());
    assert!(sync.delta_bytes_per_host_s > 0.0, "{}", report.table());
    // The small write rode on gossip as a rumor of its record.
    assert!(
        t.rumors
            .iter()
            .any(|r| r.record == "svc" && r.direction == "out"),
        "{:?}",
        t.rumors
    );
}

#[test]
fn a_model_run_says_its_gossip_was_not_measured() {
    let mut s = idle(50);
    s.store = false;
    s.membership = crate::model::MembershipKind::Model;
    let report = run(&s, None).unwrap();
    assert!(
        matches!(&report.traffic, crate::traffic::TrafficReport::NotMeasured(why) if why.starts_with("n/a (model)")),
        "{:?}",
        report.traffic
    );
    assert!(report.table().contains("n/a (model)"));
    assert!(!report.table().contains("B/s/host"));
}
