//! Hosts running the whole node core (`store = true`): writes spread through the real
//! rumor, push and anti-entropy choices over the simulated network, partitions keep them
//! on their side, and the stores converge after the heal while every slot runs once.

use super::*;

fn store_partition() -> Scenario {
    Scenario::from_toml(include_str!("../../scenarios/store-partition.toml")).unwrap()
}

/// When the scenario's partition heals, and how long after it the stores must agree: the
/// sides must first see each other again (a few probe periods) and then reach every host
/// by anti-entropy (one exchange per host every 2 s, partners at random).
const HEAL_MS: u64 = 45_000;
const CONVERGED_WITHIN_MS: u64 = 30_000;

/// The hosts of the scenario's first side; the others form the second.
const SIDE_A: std::ops::Range<usize> = 0..5;
const HOSTS: usize = 12;

fn store(engine: &Engine, h: usize) -> &Store {
    engine.hosts[h]
        .core
        .as_ref()
        .and_then(Core::store)
        .expect("a live host with the node core")
}

/// Runs `scenario` to just before the heal and checks that each side holds its own write
/// only, then to the end; returns the report.
fn split_then_heal(scenario: &Scenario, seed: u64) -> Report {
    let mut engine = Engine::new(scenario, seed).unwrap();
    // The big write (at 26 s) is pushed: its side has it within a few latencies, long
    // before the next anti-entropy round could bring it.
    engine.advance(26_050).unwrap();
    for h in (0..HOSTS).filter(|h| !SIDE_A.contains(h)) {
        assert!(
            store(&engine, h).get("svc/big").is_some(),
            "host {h}, seed {seed}"
        );
    }
    engine.advance(HEAL_MS - 1).unwrap();
    for h in 0..HOSTS {
        let small = store(&engine, h).get("svc/web").map(<[u8]>::len);
        let big = store(&engine, h).get("svc/big").map(<[u8]>::len);
        if SIDE_A.contains(&h) {
            assert_eq!((small, big), (Some(300), None), "host {h}, seed {seed}");
        } else {
            assert_eq!((small, big), (None, Some(4000)), "host {h}, seed {seed}");
        }
    }
    engine.advance(u64::MAX).unwrap();
    let first = store(&engine, 0).summary();
    for h in 0..HOSTS {
        assert_eq!(store(&engine, h).summary(), first, "host {h}, seed {seed}");
        assert_eq!(store(&engine, h).get("svc/web").map(<[u8]>::len), Some(300));
        assert_eq!(
            store(&engine, h).get("svc/big").map(<[u8]>::len),
            Some(4000)
        );
    }
    engine.finish_report(scenario)
}

fn assert_healed(report: &Report) {
    let table = report.table();
    assert!(report.store, "{table}");
    let converged = report
        .store_converged_ms
        .expect("the stores agree at the end");
    assert!(converged <= CONVERGED_WITHIN_MS, "{table}");
    assert!(report.invariant_violations.is_empty(), "{table}");
    assert!(report.pending.is_empty(), "{table}");
    assert_eq!(report.divergent_views_at_end, 0, "{table}");
    assert!(report.partition_downs > 0, "the split was seen: {table}");
}

#[test]
fn a_write_during_a_partition_stays_on_its_side_then_reaches_every_host() {
    let s = store_partition();
    for seed in [7, 8] {
        let report = split_then_heal(&s, seed);
        assert_healed(&report);
        assert_eq!(report.false_positives, 0, "{}", report.table());
    }
}

#[test]
fn with_five_percent_loss_too() {
    let mut s = store_partition();
    s.network.loss = 0.05;
    for seed in [7, 8] {
        assert_healed(&split_then_heal(&s, seed));
    }
}

#[test]
fn a_store_run_reproduces_bit_for_bit() {
    let s = store_partition();
    let a = run(&s, Some(3)).unwrap();
    assert_eq!(a.json(), run(&s, Some(3)).unwrap().json());
    assert!(a.table().contains("store "), "{}", a.table());
    assert!(a.engine.contains("node core"), "{}", a.engine);
}

#[test]
fn an_exchange_over_a_cut_link_fails_and_a_restarted_host_keeps_its_store() {
    let text = include_str!("../../scenarios/store-partition.toml");
    let (head, _) = text.split_once("[[faults]]").unwrap();
    // Host 3 hears nobody for a while (every link into it cut), is written to by host 0
    // meanwhile, then is killed and restarted: it comes back with what it held, and takes
    // the write from the others.
    let mut faults = String::new();
    for from in (0..HOSTS).filter(|&o| o != 3) {
        faults += &format!("[[faults]]\nkind = \"cut\"\nat_s = 20\nfrom = {from}\nto = 3\n");
        faults += &format!("[[faults]]\nkind = \"restore\"\nat_s = 40\nfrom = {from}\nto = 3\n");
    }
    faults += "[[faults]]\nkind = \"write\"\nat_s = 21\nhost = 0\nkey = \"svc/a\"\nbytes = 100\n";
    faults += "[[faults]]\nkind = \"kill\"\nat_s = 30\nhost = 3\n";
    faults += "[[faults]]\nkind = \"restart\"\nat_s = 35\nhost = 3\n";
    let s = Scenario::from_toml(&format!("{head}{faults}")).unwrap();
    let mut engine = Engine::new(&s, 1).unwrap();
    engine.advance(29_000).unwrap();
    assert_eq!(
        store(&engine, 3).get("svc/a"),
        None,
        "nothing reaches host 3"
    );
    assert!(store(&engine, 5).get("svc/a").is_some());
    let held = store(&engine, 3).len();
    engine.advance(35_000).unwrap();
    assert_eq!(
        store(&engine, 3).len(),
        held,
        "restarted from its own store"
    );
    engine.advance(u64::MAX).unwrap();
    assert!(store(&engine, 3).get("svc/a").is_some(), "caught up");
    let report = engine.finish_report(&s);
    assert!(report.store_converged_ms.is_some(), "{}", report.table());
    assert!(report.invariant_violations.is_empty(), "{}", report.table());
}

#[test]
fn scenarios_say_what_a_store_needs() {
    let text = include_str!("../../scenarios/store-partition.toml");
    let err = |t: &str| Scenario::from_toml(t).unwrap_err().to_string();
    let no_store = text.replace("\nstore = true", "");
    assert!(err(&no_store).contains("needs store = true"));
    let (head, _) = text.split_once("[[faults]]").unwrap();
    let model = head.replace("\nstore = true", "\nstore = true\nmembership = \"model\"");
    assert!(err(&model).contains("store = true runs the real node core"));
    let huge = text.replace("bytes = 4000", "bytes = 2000000");
    assert!(err(&huge).contains("at most"));
}
