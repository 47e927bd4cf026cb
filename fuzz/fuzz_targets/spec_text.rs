//! The text forms of spec fields, as flags and Compose files give them: ports,
//! constraints, durations, memory and CPU quantities, stop signals, node ids.
#![no_main]

use knit_scheduler::NodeId;
use knit_scheduler::spec::{
    Constraint, PortSpec, normalize_signal, parse_cpu_millis, parse_duration_ms,
    parse_memory_bytes, signal_number,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(port) = text.parse::<PortSpec>() {
        assert_eq!(port.to_string().parse::<PortSpec>().ok(), Some(port));
    }
    if let Ok(constraint) = text.parse::<Constraint>() {
        // Specs carry constraints as text: every peer must read back the same one.
        let printed = constraint.to_string();
        assert_eq!(
            printed.parse::<Constraint>().ok(),
            Some(constraint.clone()),
            "{printed:?}"
        );
        let json = serde_json::to_string(&constraint).expect("a constraint is a string");
        let back: Constraint = serde_json::from_str(&json).expect("and reads back");
        assert_eq!(back, constraint);
    }
    let _ = parse_duration_ms(text);
    let _ = parse_memory_bytes(text);
    let _ = parse_cpu_millis(text);
    if let Some(signal) = normalize_signal(text) {
        assert_eq!(normalize_signal(&signal).as_deref(), Some(signal.as_str()));
        assert!(signal_number(&signal).is_some_and(|n| (1..=64).contains(&n)));
    }
    if let Ok(id) = NodeId::new(text) {
        assert_eq!(id.as_str(), text);
    }
});
