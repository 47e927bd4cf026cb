//! The admin API's JSON bodies that reach the scheduler (`service create`, the spec of
//! `service update`, `cluster update`'s limits) and the replica reports peers publish; then
//! what the API does with a spec: validate it within the limits and the slot cap, store it
//! as JSON for every peer to read, follow the current version, roll back.
#![no_main]

use knit_scheduler::spec::limits::{Limits, check_slot_cap, over_slot_cap};
use knit_scheduler::{ReplicaReport, ServiceSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = serde_json::from_slice::<ReplicaReport>(data) {
        let _ = report.slot.to_string();
        let _ = report.serves(1);
    }
    let limits = match serde_json::from_slice::<Limits>(data) {
        Ok(limits) if limits.validate().is_ok() => limits,
        _ => Limits::default(),
    };
    let Ok(spec) = serde_json::from_slice::<ServiceSpec>(data) else {
        return;
    };
    if spec.validate(&limits).is_err() {
        return;
    }
    let current = ServiceSpec::docker(&spec.name, "fuzz/current:1");
    let _ = check_slot_cap(&spec, [&current], 3, &limits);
    let _ = over_slot_cap([&spec, &current], 3, &limits);
    // What the API stores, every peer reads back, and finds valid.
    let json = serde_json::to_vec(&spec).expect("a spec is JSON");
    let back: ServiceSpec = serde_json::from_slice(&json).expect("a stored spec reads back");
    back.validate(&limits).expect("a stored spec stays valid");
    assert!(back.same_template(&spec) && back.same_placement(&spec));
    assert_eq!(back.template_id(), spec.template_id(), "a stored spec runs the same");
    // `service update` onto a current version, then `service rollback`.
    let mut update = spec.clone();
    update.previous = None;
    let next = current.followed_by(update, false);
    next.validate(&limits)
        .expect("an update of a valid spec is valid");
    assert!(next.runs_current(next.template_id()) && next.version == current.version + 1);
    let previous = next
        .previous
        .clone()
        .expect("an update keeps the previous spec");
    let rolled = next.followed_by(*previous, false);
    rolled.validate(&limits).expect("a rollback is valid");
    assert!(rolled.runs_current(current.template_id()), "a rollback runs the previous template");
});
