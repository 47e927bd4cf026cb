//! The admin API's service bodies (`service create`, the spec of `service update`) and
//! the replica reports peers publish, as JSON; then what the API does with a spec:
//! validate, store as JSON for every peer to read, follow the current version, roll back.
#![no_main]

use knit_scheduler::{ReplicaReport, ServiceSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = serde_json::from_slice::<ReplicaReport>(data) {
        let _ = report.slot.to_string();
        let _ = report.serves(1);
    }
    let Ok(spec) = serde_json::from_slice::<ServiceSpec>(data) else {
        return;
    };
    if spec.validate().is_err() {
        return;
    }
    // What the API stores, every peer reads back, and finds valid.
    let json = serde_json::to_vec(&spec).expect("a spec is JSON");
    let back: ServiceSpec = serde_json::from_slice(&json).expect("a stored spec reads back");
    back.validate().expect("a stored spec stays valid");
    assert!(back.same_template(&spec) && back.same_placement(&spec));
    // `service update` onto a current version, then `service rollback`.
    let current = ServiceSpec::docker(&spec.name, "fuzz/current:1");
    let next = current.followed_by(spec.clone(), false);
    next.validate().expect("an update of a valid spec is valid");
    assert!(next.runs_current(next.version) && next.version == current.version + 1);
    let previous = next
        .previous
        .clone()
        .expect("an update keeps the previous spec");
    let rolled = next.followed_by(*previous, false);
    rolled.validate().expect("a rollback is valid");
});
