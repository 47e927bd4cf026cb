//! The node core in virtual time: cores wired by the in-test network of `net`.

use super::net::{Net, START_MS, core, peer};
use super::*;
use crate::membership::{MembershipTimer, RUMOR_MAX_BYTES, SPREAD_BATCH_MS};
use crate::store::revoked_key;

/// Anti-entropy so rare that it never runs within a test: what arrives came by gossip.
const NO_SYNC_MS: u64 = 3_600_000;
/// Anti-entropy as often as the `fast` profile's peers run it, in ms.
const SYNC_MS: u64 = 500;
/// Enough for three fast-profile cores to find each other, in ms.
const JOIN_MS: u64 = 5_000;

fn joined(n: u8, seed: u64, sync_period_ms: u64) -> Net {
    let mut net = Net::new(n, seed, sync_period_ms);
    net.run_for(JOIN_MS);
    assert!(net.converged(), "the cores did not find each other");
    net
}

fn has(net: &Net, i: u8, key: &str, value: &[u8]) -> bool {
    net.core(i).store().get(key) == Some(value)
}

#[test]
fn a_new_core_publishes_its_view_store_and_certificate() {
    let mut core = core(1, 7, SYNC_MS, START_MS);
    let outputs: Vec<Output> = std::iter::from_fn(|| core.poll_output()).collect();
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::View(v) if v.me == peer(1)))
    );
    assert!(outputs.contains(&Output::StoreChanged));
    for timer in [Timer::MemberSync, Timer::AntiEntropy, Timer::Collect] {
        let armed = Output::Timer {
            after: Duration::ZERO,
            timer,
        };
        assert!(outputs.contains(&armed));
    }
    let cert_record = core.store().get(&cert_key(&peer(1).node));
    assert!(cert_record.is_some());
}

#[test]
fn a_small_write_spreads_as_a_rumor() {
    let mut net = joined(3, 1, NO_SYNC_MS);
    let exchanges = net.exchanges.clone();
    net.put(1, "svc/web", b"v1");
    net.run_for(2_000);
    for i in 1..=3 {
        assert!(has(&net, i, "svc/web", b"v1"), "node {i}");
    }
    assert_eq!(net.exchanges, exchanges, "no exchange carried it");
    assert!(net.pushes.is_empty(), "no push carried it");
}

#[test]
fn a_large_write_is_pushed_to_every_member() {
    let mut net = joined(3, 2, NO_SYNC_MS);
    let big = vec![7u8; RUMOR_MAX_BYTES * 3];
    net.put(2, "svc/big", &big);
    assert_eq!(
        net.pushes.get(&peer(2).node),
        Some(&2),
        "one push per other member"
    );
    net.run_for(100);
    for i in 1..=3 {
        assert!(has(&net, i, "svc/big", &big), "node {i}");
    }
}

#[test]
fn anti_entropy_repairs_a_lost_push() {
    let mut net = joined(3, 3, SYNC_MS);
    net.lose_pushes_to.insert(peer(3).node);
    let big = vec![1u8; RUMOR_MAX_BYTES * 2];
    // Between two anti-entropy rounds.
    net.run_for(SYNC_MS / 2);
    net.put(1, "svc/big", &big);
    net.run_for(2);
    assert!(has(&net, 2, "svc/big", &big));
    assert!(!has(&net, 3, "svc/big", &big), "its push was lost");
    net.run_for(SYNC_MS * 10);
    assert!(has(&net, 3, "svc/big", &big), "anti-entropy brought it");
}

#[test]
fn a_member_cut_off_during_a_write_catches_up() {
    let mut net = joined(3, 4, SYNC_MS);
    net.cut.insert(peer(3).node);
    net.put(1, "svc/web", b"v2");
    net.run_for(300);
    assert!(!has(&net, 3, "svc/web", b"v2"));
    net.cut.clear();
    net.run_for(JOIN_MS);
    for i in 1..=3 {
        assert!(has(&net, i, "svc/web", b"v2"), "node {i}");
    }
    assert!(net.converged());
}

#[test]
fn a_late_member_is_filled_from_its_seed() {
    let mut net = joined(2, 5, NO_SYNC_MS);
    net.put(1, "svc/web", b"v1");
    net.run_for(1_000);
    let now = net.now_ms;
    net.add(core(3, 5, NO_SYNC_MS, now));
    net.input(peer(3).node, Input::Announce(peer(1)));
    net.run_for(1_000);
    assert!(has(&net, 3, "svc/web", b"v1"));
    assert_eq!(net.exchanges.get(&peer(3).node), Some(&1), "one fill");
}

#[test]
fn a_removed_nodes_later_writes_are_refused() {
    let mut net = joined(3, 6, SYNC_MS);
    net.put(3, "svc/before", b"ok");
    net.run_for(1_000);
    net.put(1, &revoked_key(&peer(3).node), b"rm");
    net.run_for(2_000);
    for i in 1..=2 {
        let view = net.core(i).view();
        assert!(view.members.iter().all(|m| m.peer.node != peer(3).node));
        assert!(has(&net, i, "svc/before", b"ok"), "earlier writes stay");
    }
    net.put(3, "svc/after", b"evil");
    net.run_for(2_000);
    // Handed in directly too, as a transport that let it through would.
    let deltas = net.core(3).store().missing_for(&Vec::new(), None);
    net.input(peer(1).node, Input::Merge(deltas));
    net.run_for(100);
    for i in 1..=2 {
        assert!(!has(&net, i, "svc/after", b"evil"), "node {i} took it");
    }
    assert!(net.core(1).stats().tally.refused_signature > 0);
}

#[test]
fn one_exchange_runs_at_a_time() {
    let mut core = core(1, 8, SYNC_MS, START_MS);
    let mut exchanges = 0;
    let mut now = START_MS;
    let other = peer(2);
    core.handle(Input::Announce(other), now);
    for _ in 0..5 {
        now += SYNC_MS;
        core.handle(Input::Timer(Timer::FillFrom(other)), now);
        core.handle(Input::Timer(Timer::AntiEntropy), now);
        while let Some(output) = core.poll_output() {
            exchanges += usize::from(matches!(output, Output::Exchange(_)));
        }
    }
    assert_eq!(exchanges, 1, "the first never ended");
    core.handle(Input::ExchangeEnded(other), now);
    core.handle(Input::Timer(Timer::FillFrom(other)), now);
    assert!(std::iter::from_fn(|| core.poll_output()).any(|o| o == Output::Exchange(other)));
}

fn scenario(seed: u64) -> Vec<String> {
    let mut net = joined(3, seed, SYNC_MS);
    net.put(1, "svc/web", b"v1");
    net.put(2, "svc/big", &[3u8; RUMOR_MAX_BYTES * 2]);
    net.run_for(3_000);
    net.log
}

#[test]
fn the_same_seed_gives_the_same_outputs() {
    let first = scenario(42);
    assert_eq!(first, scenario(42));
    assert_ne!(first, scenario(43));
}

#[test]
fn deltas_from_peers_are_admitted_a_chunk_per_turn_certificates_first() {
    use crate::trust::test_keys::{FakeSigner, cert};
    let mut core = core(1, 9, SYNC_MS, START_MS);
    while core.poll_output().is_some() {}
    let writer = peer(2).node;
    let mut theirs = Store::new(writer);
    let signer = FakeSigner(writer);
    let mut deltas: Vec<Delta> = (0..ADMIT_CHUNK + 100)
        .map(|i| theirs.put(&format!("k/{i}"), Some(vec![1]), START_MS, &signer))
        .collect();
    deltas.push(theirs.put(&cert_key(&writer), Some(cert(&writer)), START_MS, &signer));
    let total = deltas.len();
    core.handle(Input::Merge(deltas), START_MS);
    let admit = Output::Timer {
        after: Duration::ZERO,
        timer: Timer::Admit,
    };
    let outputs: Vec<Output> = std::iter::from_fn(|| core.poll_output()).collect();
    assert_eq!(
        outputs,
        vec![admit.clone()],
        "one admission armed, nothing applied yet"
    );
    core.handle(Input::Timer(Timer::Admit), START_MS);
    let stats = core.stats();
    assert_eq!(
        stats.tally.applied, ADMIT_CHUNK as u64,
        "the certificate came first"
    );
    assert_eq!(stats.backlog, total - ADMIT_CHUNK);
    assert!(std::iter::from_fn(|| core.poll_output()).any(|o| o == admit));
    core.handle(Input::Timer(Timer::Admit), START_MS);
    assert_eq!(core.stats().tally.applied, total as u64);
    assert_eq!(core.stats().backlog, 0);
}

#[test]
fn a_write_reaches_every_member_in_a_few_ms_not_a_gossip_period() {
    // The writer's spread and a relay's, 5 ms each, and a packet's 1 ms each: far less
    // than the `fast` profile's 100 ms between periodic gossips. Gossip is random: a
    // rumor's few transmissions (3 per node at 5 members) can all miss a member, which
    // anti-entropy then repairs (none runs here); without the spreads, a write took a
    // periodic gossip (103 ms) to reach all four in 9 of these 20 runs.
    let within_ms = 2 * SPREAD_BATCH_MS + 5;
    let mut reached_all = 0;
    for seed in 1..=20 {
        let mut net = joined(5, seed, NO_SYNC_MS);
        net.put(1, "svc/web", b"v1");
        net.run_for(within_ms);
        let reached = (2..=5).filter(|i| has(&net, *i, "svc/web", b"v1")).count();
        assert!(
            reached >= 3,
            "seed {seed}: {reached} of 4 within {within_ms} ms"
        );
        reached_all += usize::from(reached == 4);
    }
    assert!(
        reached_all >= 16,
        "all four within {within_ms} ms in {reached_all} of 20 runs"
    );
}

/// Hands `input` to `core` at `at_ms` after the start; the spread timers it armed.
fn spreads_armed(core: &mut NodeCore, input: Input, at_ms: u64) -> usize {
    core.handle(input, START_MS + at_ms);
    std::iter::from_fn(|| core.poll_output())
        .filter(|o| {
            matches!(
                o,
                Output::Timer {
                    timer: Timer::Membership(MembershipTimer::Spread),
                    ..
                }
            )
        })
        .count()
}

#[test]
fn writes_close_together_share_one_spread_and_one_per_gossip_period() {
    let mut core = core(1, 7, NO_SYNC_MS, START_MS);
    while core.poll_output().is_some() {}
    let put = |key: &str| Input::Put {
        key: key.to_owned(),
        value: Some(b"1".to_vec()),
    };
    assert_eq!(spreads_armed(&mut core, put("svc/a"), 0), 1);
    let armed = "the spread armed carries it";
    assert_eq!(spreads_armed(&mut core, put("svc/b"), 1), 0, "{armed}");
    let fired = Input::Timer(Timer::Membership(MembershipTimer::Spread));
    assert_eq!(spreads_armed(&mut core, fired, SPREAD_BATCH_MS), 0);
    let periodic = "the periodic gossip carries it";
    let soon = SPREAD_BATCH_MS + 1;
    assert_eq!(
        spreads_armed(&mut core, put("svc/c"), soon),
        0,
        "{periodic}"
    );
    let period = Profile::Fast.gossip_period_ms();
    assert_eq!(period, 100);
    let again = "a period later, a write spreads at once again";
    assert_eq!(spreads_armed(&mut core, put("svc/d"), period), 1, "{again}");
}
