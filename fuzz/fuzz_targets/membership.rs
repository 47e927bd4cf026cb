//! The membership core fed arbitrary packets: foca's whole packet decoder (header,
//! member updates, custom broadcasts through knit's codec and rumor handler), then foca's
//! reaction, the timers it asks for, and knit's member table.
#![no_main]

use knit_fuzz::{NOW_MS, messages, peer};
use knit_mesh::{Membership, Output, Profile, Timer};
use libfuzzer_sys::fuzz_target;

/// Timers handed back at most per input: foca re-arms its probe timer forever.
const TIMERS_MAX: usize = 32;

struct Due {
    at_ms: u64,
    timer: Timer,
}

fn drain(core: &mut Membership, now_ms: u64, timers: &mut Vec<Due>) {
    while let Some(output) = core.poll_output() {
        if let Output::Timer { after, timer } = output {
            let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
            timers.push(Due {
                at_ms: now_ms.saturating_add(after_ms),
                timer,
            });
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The seeds were recorded at node 2 of a three-node cluster, with these arguments.
    let me = peer(2);
    let mut now_ms = NOW_MS;
    let mut core = Membership::new(me, Profile::Lan, 2, now_ms);
    let mut timers = Vec::new();
    for packet in messages(data) {
        let _ = core.handle_packet(packet, now_ms);
        drain(&mut core, now_ms, &mut timers);
        now_ms += 10;
    }
    for _ in 0..TIMERS_MAX {
        let Some(next) = (0..timers.len()).min_by_key(|&i| timers[i].at_ms) else {
            break;
        };
        let due = timers.swap_remove(next);
        now_ms = now_ms.max(due.at_ms);
        let _ = core.handle_timer(due.timer, now_ms);
        drain(&mut core, now_ms, &mut timers);
    }
    let _ = core.sync(now_ms);
    drain(&mut core, now_ms, &mut timers);
    assert_eq!(core.identity().node, me.node, "a node stays itself");
    assert!(
        core.member(&me.node).is_some(),
        "a node is in its own table"
    );
});
