//! Spec changes during a run (`update` faults): a new image rolls out wave by wave through
//! the agents' real rollout, a new replica count scales, and the run ends with every slot
//! running exactly once at the current version, with or without a partition in between.

use super::*;

fn rollout() -> Scenario {
    Scenario::from_toml(include_str!("../../scenarios/rollout.toml")).unwrap()
}

/// Replicas of `service` running, and how many of them run its current spec.
fn running(engine: &Engine, service: &str) -> (usize, usize) {
    let current = engine.templates[service].1;
    let mut all = 0;
    let mut new = 0;
    for host in engine.hosts.iter().filter(|h| h.up) {
        for (&s, &(_, template)) in &host.started_as {
            if engine.healing.slots[s as usize].service == service
                && host.running.get(&s) == Some(&SlotState::Running)
            {
                all += 1;
                new += usize::from(template == current);
            }
        }
    }
    (all, new)
}

fn assert_converged(report: &Report) {
    let table = report.table();
    assert!(report.invariant_violations.is_empty(), "{table}");
    assert!(report.pending.is_empty(), "{table}");
    assert_eq!(report.divergent_views_at_end, 0, "{table}");
}

#[test]
fn a_new_image_rolls_out_in_waves_and_every_slot_ends_at_it_once() {
    let s = rollout();
    let mut engine = Engine::new(&s, s.seed).unwrap();
    let all = engine.live_set();
    let first = engine.healing.placement_for(&all).placement.clone();
    engine.advance(20_000).unwrap();
    assert_eq!(running(&engine, "api"), (8, 0), "before the update");
    // Scaling blog from 6 to 9 at the same time moves a few slots: the load bound goes
    // from 3 to 4, which lets api.3 back to the host it ranks first (the bound had
    // deflected it), and a new blog replica takes blog.2's host in the spread pass. A moved
    // api slot starts on its new host at the new image, outside any wave.
    let scaled = engine.healing.placement_for(&all).placement.clone();
    let moved = scaled.moves_from(&first);
    let api_moved = scaled
        .service_slots("api")
        .filter(|(slot, _)| first.owner(slot) != scaled.owner(slot))
        .count();
    assert_eq!((moved, api_moved), (2, 1), "api.3 and blog.2 move");
    // Waves of two, each served then watched 3 s, then 2 s before the next: 4 waves.
    let mut t = 20_000;
    let mut done_at = None;
    let mut most_new = 0;
    while t < 80_000 {
        t += 250;
        engine.advance(t).unwrap();
        let (all, new) = running(&engine, "api");
        assert!(new >= most_new, "a replaced replica went back, at {t} ms");
        // Stop first: at most one wave's replicas are down at once.
        assert!(all >= 8 - 2, "{all} api replicas run at {t} ms");
        if t < 25_000 {
            assert!(
                new <= 2 + api_moved,
                "{new} replicas new at {t} ms, before a second wave"
            );
        }
        most_new = new;
        if new == 8 && all == 8 && done_at.is_none() {
            done_at = Some(t);
        }
    }
    let done_at = done_at.expect("the rollout completes");
    assert!(
        done_at >= 20_000 + 3 * (3_000 + 2_000),
        "four waves take three monitor-and-delay periods at least: done at {done_at} ms"
    );
    // Scaling blog down to 4 at 45 s lets two of the four left return to the hosts they
    // rank first, which replicas now removed had held (spread binds).
    let last = engine.healing.placement_for(&all).placement.clone();
    let moved_down = last.moves_from(&scaled);
    assert_eq!(moved_down, 2);
    let report = engine.finish_report(&s);
    assert_converged(&report);
    // Each api slot started once at the new image (replaced in a wave, or moved), three
    // blog replicas scaled up, and one start for each other slot the scaling moved: no
    // other start.
    assert_eq!(
        report.container_starts,
        8 + 3 + (moved - api_moved) as u64 + moved_down as u64,
        "{}",
        report.table()
    );
}

#[test]
fn scaling_up_then_down_leaves_exactly_the_slots_of_the_spec() {
    let s = rollout();
    let mut engine = Engine::new(&s, s.seed).unwrap();
    engine.advance(40_000).unwrap();
    assert_eq!(running(&engine, "blog"), (9, 9), "scaled up to 9");
    engine.advance(u64::MAX).unwrap();
    assert_eq!(running(&engine, "blog"), (4, 4), "scaled down to 4");
    let mut slots: Vec<String> = engine
        .hosts
        .iter()
        .flat_map(|h| h.running.keys())
        .map(|&s| engine.healing.slots[s as usize].to_string())
        .filter(|slot| slot.starts_with("blog"))
        .collect();
    slots.sort();
    assert_eq!(slots, ["blog.1", "blog.2", "blog.3", "blog.4"]);
    assert_converged(&engine.finish_report(&s));
}

#[test]
fn a_rollout_run_reproduces_bit_for_bit() {
    let s = rollout();
    assert_eq!(
        run(&s, Some(3)).unwrap().json(),
        run(&s, Some(3)).unwrap().json()
    );
}

#[test]
fn an_update_during_a_partition_converges_after_the_heal_with_stores() {
    let s =
        Scenario::from_toml(include_str!("../../scenarios/store-partition-update.toml")).unwrap();
    let mut engine = Engine::new(&s, s.seed).unwrap();
    // The spec record was written through host 1, on the small side: it stays there.
    engine.advance(44_000).unwrap();
    for h in 0..12 {
        let store = engine.hosts[h].core.as_ref().and_then(Core::store).unwrap();
        assert_eq!(
            store.get("svc/web").is_some(),
            h < 5,
            "host {h} before the heal"
        );
    }
    engine.advance(u64::MAX).unwrap();
    for h in 0..12 {
        let store = engine.hosts[h].core.as_ref().and_then(Core::store).unwrap();
        assert!(store.get("svc/web").is_some(), "host {h} after the heal");
    }
    assert_eq!(running(&engine, "web"), (10, 10));
    assert_eq!(running(&engine, "worker"), (6, 6));
    let report = engine.finish_report(&s);
    assert_converged(&report);
    assert!(report.store_converged_ms.is_some(), "{}", report.table());
    assert!(report.partition_downs > 0, "{}", report.table());
}

#[test]
fn bad_update_faults_say_what_to_do() {
    let base = include_str!("../../scenarios/rollout.toml");
    let cases = [
        (
            "service = \"api\"\nimage = \"sim:2\"",
            "service = \"apu\"\nimage = \"sim:2\"",
            "fix the name or add it under [[services]]",
        ),
        (
            "service = \"api\"\nimage = \"sim:2\"",
            "service = \"api\"",
            "give it an image (rolls out) or replicas (scales)",
        ),
        ("delay_s = 2", "delay_s = -2", "give seconds, 0 or more"),
        ("image = \"sim:2\"", "image = \"\"", "name one"),
        (
            "service = \"api\"\nimage = \"sim:2\"",
            "service = \"api\"\nimage = \"sim:2\"\nhost = 6",
            "hosts are 0..6",
        ),
    ];
    for (from, to, says) in cases {
        assert!(base.contains(from), "{from}");
        let err = Scenario::from_toml(&base.replacen(from, to, 1)).unwrap_err();
        assert!(err.to_string().contains(says), "{to}: {err}");
    }
}

fn remove() -> Scenario {
    Scenario::from_toml(include_str!("../../scenarios/remove.toml")).unwrap()
}

#[test]
fn a_removed_host_is_cut_off_everywhere_and_never_comes_back() {
    let s = remove();
    let mut engine = Engine::new(&s, s.seed).unwrap();
    engine.advance(25_000).unwrap();
    let gone = engine.hosts[3].peer.node;
    engine.advance(40_000).unwrap();
    // The operator restarting it anyway: a removed host stays down.
    engine.fault(Fault::Restart {
        at_s: 40.0,
        host: 3,
    });
    assert!(!engine.hosts[3].up);
    engine.advance(u64::MAX).unwrap();
    let name = engine.healing.name(3).clone();
    for h in (0..8).filter(|&h| h != 3) {
        let core = engine.hosts[h].core.as_ref().unwrap();
        assert!(core.store().unwrap().is_revoked(&gone), "host {h}'s store");
        assert!(
            !engine.members_of(h).active.contains_key(&name),
            "host {h} counts the removed host active"
        );
        assert!(
            core.membership()
                .members()
                .all(|m| m.peer.node != gone || !m.state.is_active()),
            "host {h}'s membership"
        );
    }
    assert_eq!(running(&engine, "web"), (12, 12));
    assert_eq!(running(&engine, "worker"), (6, 6));
    let report = engine.finish_report(&s);
    assert_converged(&report);
    assert!(report.store_converged_ms.is_some(), "{}", report.table());
}

#[test]
fn bad_remove_faults_say_what_to_do() {
    let base = include_str!("../../scenarios/remove.toml");
    let cases = [
        (
            "kind = \"kill\"\nat_s = 15",
            "kind = \"kill\"\nat_s = 30",
            "add a kill fault of it before",
        ),
        (
            "through = 0",
            "through = 3",
            "give another host as `through`",
        ),
        ("through = 0", "through = 8", "hosts are 0..8"),
    ];
    for (from, to, says) in cases {
        assert!(base.contains(from), "{from}");
        let err = Scenario::from_toml(&base.replacen(from, to, 1)).unwrap_err();
        assert!(err.to_string().contains(says), "{to}: {err}");
    }
    let back = format!("{base}\n[[faults]]\nkind = \"restart\"\nat_s = 50\nhost = 3\n");
    let err = Scenario::from_toml(&back).unwrap_err();
    assert!(
        err.to_string().contains("drop its restart at 50 s"),
        "{err}"
    );
}
