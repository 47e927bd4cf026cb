//! The rules a service spec must follow before any peer accepts it.

use std::collections::BTreeSet;

use super::{Driver, Mode, Probe, ServiceSpec, UpdateConfig};
use crate::error::SpecError;

/// Whether `name` is `[a-z0-9][a-z0-9_.-]{0,62}`.
fn name_is_valid(name: &str) -> bool {
    let bytes = name.as_bytes();
    let first_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(b))
}

/// The longest a replica may be given to stop.
const MAX_STOP_GRACE_MS: u64 = 3_600_000;

impl ServiceSpec {
    /// Checks every rule a spec must follow; the first broken one is the error.
    pub fn validate(&self) -> Result<(), SpecError> {
        let bad = |field, why: String| Err(SpecError::invalid(&self.name, field, why));
        if !name_is_valid(&self.name) {
            return bad(
                "name",
                "must be 1-63 characters of a-z, 0-9, '_', '.' or '-', starting with a letter or digit, e.g. blog or api-v2".into(),
            );
        }
        match self.driver {
            Driver::Docker if self.image.as_deref().is_none_or(|i| i.trim().is_empty()) => {
                return bad(
                    "image",
                    "the docker driver needs an image, e.g. nginx:1.27".into(),
                );
            }
            Driver::Process if self.command.first().is_none_or(|c| c.is_empty()) => {
                return bad(
                    "command",
                    "the process driver needs a command, e.g. [\"/usr/bin/python3\", \"-m\", \"http.server\"]".into(),
                );
            }
            _ => {}
        }
        self.validate_ports()?;
        self.validate_resources()?;
        if let Some(key) = self.env.keys().find(|k| k.is_empty() || k.contains('=')) {
            return bad(
                "env",
                format!("variable name {key:?} must be non-empty and have no '='"),
            );
        }
        self.validate_health()?;
        if self.stop_grace_ms > MAX_STOP_GRACE_MS {
            return bad("stop-grace-period", "must be at most 1h, e.g. 30s".into());
        }
        if let Some(signal) = &self.stop_signal
            && super::normalize_signal(signal).as_deref() != Some(signal.as_str())
        {
            return bad(
                "stop-signal",
                format!(
                    "{signal:?} is not a signal: give a name such as SIGTERM or SIGQUIT, or a number from 1 to 64"
                ),
            );
        }
        validate_update(&self.name, "update", &self.update)?;
        validate_update(&self.name, "rollback", &self.rollback)?;
        self.validate_autoscale()?;
        if let Some(previous) = &self.previous {
            if previous.previous.is_some() {
                return bad(
                    "previous",
                    "keeps one level only; clear previous.previous".into(),
                );
            }
            if previous.name != self.name {
                return bad(
                    "previous",
                    format!("names {:?}, not this service", previous.name),
                );
            }
        }
        Ok(())
    }

    fn validate_ports(&self) -> Result<(), SpecError> {
        let mut seen = BTreeSet::new();
        for p in &self.ports {
            if p.published == 0 || p.target == 0 {
                let why = format!("{p}: port numbers must be 1-65535");
                return Err(SpecError::invalid(&self.name, "ports", why));
            }
            if !seen.insert((p.published, p.protocol)) {
                let why = format!(
                    "{}/{} is published twice; each published port and protocol may appear once",
                    p.published, p.protocol
                );
                return Err(SpecError::invalid(&self.name, "ports", why));
            }
        }
        Ok(())
    }

    fn validate_resources(&self) -> Result<(), SpecError> {
        let (r, l) = (&self.reservations, &self.limits);
        if l.cpu_millis != 0 && r.cpu_millis > l.cpu_millis {
            let why = format!(
                "cpu reservation {}m is above the cpu limit {}m; lower the reservation or raise the limit",
                r.cpu_millis, l.cpu_millis
            );
            return Err(SpecError::invalid(&self.name, "reservations", why));
        }
        if l.memory_bytes != 0 && r.memory_bytes > l.memory_bytes {
            let why = format!(
                "memory reservation {} bytes is above the memory limit {} bytes; lower the reservation or raise the limit",
                r.memory_bytes, l.memory_bytes
            );
            return Err(SpecError::invalid(&self.name, "reservations", why));
        }
        Ok(())
    }

    fn validate_health(&self) -> Result<(), SpecError> {
        let Some(h) = &self.health else { return Ok(()) };
        let bad = |why: &str| Err(SpecError::invalid(&self.name, "health", why.to_owned()));
        match &h.probe {
            Probe::Command(argv) if argv.first().is_none_or(|c| c.is_empty()) => {
                return bad(
                    "the command probe is empty; give a command, e.g. [\"curl\", \"-f\", \"http://localhost/\"]",
                );
            }
            Probe::Http { path, .. } if !path.starts_with('/') => {
                return bad("the http probe path must start with '/', e.g. /healthz");
            }
            Probe::Http { port: Some(0), .. } => return bad("the http probe port must be 1-65535"),
            _ => {}
        }
        if h.interval_ms == 0 || h.timeout_ms == 0 {
            return bad("interval and timeout must be above zero, e.g. 30s");
        }
        if h.retries == 0 {
            return bad("retries must be at least 1");
        }
        if h.response_time_max_ms == Some(0) {
            return bad("response_time_max must be above zero, e.g. 500ms, or unset");
        }
        Ok(())
    }

    fn validate_autoscale(&self) -> Result<(), SpecError> {
        let Some(a) = &self.autoscale else {
            return Ok(());
        };
        let bad = |why: String| Err(SpecError::invalid(&self.name, "autoscale", why));
        if self.mode == Mode::Global {
            return bad("a global service runs one replica per node and cannot scale".into());
        }
        if a.min > a.max {
            return bad(format!(
                "min {} is above max {}; use min <= max",
                a.min, a.max
            ));
        }
        if !(1..=100).contains(&a.cpu_target_percent) {
            return bad(format!(
                "cpu target {}% must be 1-100, e.g. 70",
                a.cpu_target_percent
            ));
        }
        Ok(())
    }
}

fn validate_update(service: &str, field: &'static str, u: &UpdateConfig) -> Result<(), SpecError> {
    if !(0.0..=1.0).contains(&u.max_failure_ratio) {
        let why = format!(
            "max_failure_ratio {} must be between 0 and 1, e.g. 0.2 for 20%",
            u.max_failure_ratio
        );
        return Err(SpecError::invalid(service, field, why));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Autoscale, HealthCheck, PortSpec};

    fn error(spec: &ServiceSpec) -> String {
        spec.validate().unwrap_err().to_string()
    }

    #[test]
    fn a_plain_spec_is_valid() {
        assert_eq!(ServiceSpec::docker("blog", "blog:v1").validate(), Ok(()));
        let p = ServiceSpec {
            name: "api-v2.x_1".into(),
            driver: Driver::Process,
            command: vec!["/bin/sleep".into()],
            ..ServiceSpec::default()
        };
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn names_follow_the_dns_label_rule() {
        for bad in ["", "Blog", "-blog", "blog!", &"a".repeat(64)] {
            let e = error(&ServiceSpec::docker(bad, "img"));
            assert!(e.contains("name") && e.contains("a-z, 0-9"), "{bad}: {e}");
        }
        assert!(
            ServiceSpec::docker(&"a".repeat(63), "img")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn drivers_need_what_they_run() {
        let e = error(&ServiceSpec {
            name: "blog".into(),
            ..ServiceSpec::default()
        });
        assert!(e.contains("needs an image"), "{e}");
        let e = error(&ServiceSpec {
            name: "blog".into(),
            driver: Driver::Process,
            ..ServiceSpec::default()
        });
        assert!(e.contains("needs a command"), "{e}");
    }

    #[test]
    fn ports_are_unique_per_protocol() {
        let mut s = ServiceSpec::docker("blog", "img");
        s.ports = vec!["80:4000".parse().unwrap(), "80:4001".parse().unwrap()];
        assert!(error(&s).contains("80/tcp is published twice"));
        s.ports[1] = "80:4000/udp".parse().unwrap();
        assert!(s.validate().is_ok());
        s.ports.push(PortSpec {
            published: 0,
            ..s.ports[0]
        });
        assert!(error(&s).contains("1-65535"));
    }

    #[test]
    fn numbers_stay_in_range() {
        let mut s = ServiceSpec::docker("blog", "img");
        s.update.max_failure_ratio = 1.5;
        assert!(error(&s).contains("between 0 and 1"));
        s.update.max_failure_ratio = f64::NAN;
        assert!(error(&s).contains("between 0 and 1"));
        s.update.max_failure_ratio = 0.0;
        s.autoscale = Some(Autoscale {
            min: 5,
            max: 2,
            cpu_target_percent: 70,
        });
        assert!(error(&s).contains("min 5 is above max 2"));
        s.autoscale = None;
        s.reservations.memory_bytes = 2 << 20;
        s.limits.memory_bytes = 1 << 20;
        assert!(error(&s).contains("above the memory limit"));
        s.limits.memory_bytes = 0;
        s.health = Some(HealthCheck::new(Probe::Http {
            path: "healthz".into(),
            port: None,
        }));
        assert!(error(&s).contains("start with '/'"));
        s.health = None;
        s.stop_grace_ms = 2 * 3_600_000;
        assert!(error(&s).contains("stop-grace-period"), "{}", error(&s));
        s.stop_grace_ms = 1_000;
        s.stop_signal = Some("quit".into());
        assert!(error(&s).contains("stop-signal"), "{}", error(&s));
        s.stop_signal = Some("SIGQUIT".into());
        s.validate().unwrap();
    }

    #[test]
    fn old_records_decode_with_defaults() {
        let json = r#"{"name":"blog","image":"blog:v1","constraints":["node.labels.zone==a"]}"#;
        let s: ServiceSpec = serde_json::from_str(json).unwrap();
        assert_eq!(s.mode, Mode::Replicated { replicas: 1 });
        assert_eq!(s.restart.delay_ms, 5_000);
        assert_eq!(s.stop_grace_ms, 10_000);
        assert_eq!(s.update.monitor_ms, 5_000);
        assert_eq!(s.constraints[0].to_string(), "node.labels.zone==a");
        let back: ServiceSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let e = serde_json::from_str::<ServiceSpec>(r#"{"constraints":["zone=a"]}"#).unwrap_err();
        assert!(e.to_string().contains("use == or !="), "{e}");
    }
}
