//! The rules a service spec must follow before any peer accepts it.

use std::collections::BTreeSet;

use super::limits::{
    ARG_MAX_BYTES, ARGS_MAX, CONFIGS_MAX, CONSTRAINT_MAX_BYTES, CONSTRAINTS_MAX, DURATION_MAX_MS,
    ENV_MAX, ENV_NAME_MAX_BYTES, ENV_VALUE_MAX_BYTES, HEALTH_INTERVAL_MIN_MS,
    HEALTH_PATH_MAX_BYTES, HEALTH_RETRIES_MAX, IMAGE_MAX_BYTES, LABEL_KEY_MAX_BYTES,
    LABEL_VALUE_MAX_BYTES, LABELS_MAX, Limits, MOUNTS_MAX, PORTS_MAX, SECRETS_MAX,
    SPEC_ENCODED_MAX_BYTES, encoded_len,
};
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
    /// Checks every rule a spec must follow, within the cluster's `limits` and the fixed
    /// ones of [`super::limits`]; the first broken one is the error. The previous spec kept
    /// for rollback follows the same rules and keeps no previous spec of its own, so a
    /// stored record stays within [`super::limits::SPEC_RECORD_MAX_BYTES`].
    pub fn validate(&self, limits: &Limits) -> Result<(), SpecError> {
        self.validate_own(limits)?;
        let Some(previous) = &self.previous else {
            return Ok(());
        };
        let bad = |why: String| Err(SpecError::invalid(&self.name, "previous", why));
        if previous.previous.is_some() {
            return bad("keeps one level only; clear previous.previous".into());
        }
        if previous.name != self.name {
            return bad(format!("names {:?}, not this service", previous.name));
        }
        previous
            .validate_own(limits)
            .map_err(|e| SpecError::invalid(&self.name, "previous", e.to_string()))
    }

    /// The rules of [`ServiceSpec::validate`] but for the previous spec.
    fn validate_own(&self, limits: &Limits) -> Result<(), SpecError> {
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
            Driver::Process if !self.entrypoint.is_empty() => {
                return bad(
                    "entrypoint",
                    "the process driver runs its command and has no entrypoint; put the program first in the command".into(),
                );
            }
            _ => {}
        }
        self.validate_sizes()?;
        self.validate_scale(limits)?;
        self.validate_ports()?;
        self.validate_mounts()?;
        self.validate_secrets()?;
        self.validate_configs()?;
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
        self.validate_autoscale(limits)?;
        self.validate_size()
    }

    /// The encoded size, without the previous spec (checked on its own).
    fn validate_size(&self) -> Result<(), SpecError> {
        let total = encoded_len(self);
        let previous = self.previous.as_deref().map_or(0, encoded_len);
        let own = total.saturating_sub(previous);
        if own > SPEC_ENCODED_MAX_BYTES {
            let why = format!(
                "the spec takes {own} bytes encoded, above the {SPEC_ENCODED_MAX_BYTES} allowed; pass large configuration as a file in the image or a volume, not in env, labels or args"
            );
            return Err(SpecError::invalid(&self.name, "spec", why));
        }
        Ok(())
    }

    /// Replicas and everything a spec makes the agents do per slot.
    fn validate_scale(&self, limits: &Limits) -> Result<(), SpecError> {
        let max = limits.replicas_max;
        if let Mode::Replicated { replicas } = self.mode
            && replicas > max
        {
            let why = format!(
                "{replicas} is above the {max} a service may have in this cluster; ask for 0 to {max} (an operator may raise the limit with `knit cluster update --max-replicas N`)"
            );
            return Err(SpecError::invalid(&self.name, "replicas", why));
        }
        if self.mode == Mode::Global && self.replicas_max_per_node > 0 {
            let why = "applies to replicated services only (a global service runs one replica per node); set it to 0 or use --mode replicated";
            return Err(SpecError::invalid(&self.name, "replicas-max-per-node", why));
        }
        for (field, u) in [("update", &self.update), ("rollback", &self.rollback)] {
            if u.parallelism > max {
                let why = format!(
                    "parallelism {} is above the {max} replicas a service may have; use 0 (all at once) to {max}",
                    u.parallelism
                );
                return Err(SpecError::invalid(&self.name, field, why));
            }
            for (what, ms) in [("delay", u.delay_ms), ("monitor", u.monitor_ms)] {
                check_duration(&self.name, field, what, ms)?;
            }
        }
        check_duration(&self.name, "restart", "delay", self.restart.delay_ms)?;
        check_duration(&self.name, "restart", "window", self.restart.window_ms)
    }

    /// Counts and lengths of the lists and texts of a spec.
    fn validate_sizes(&self) -> Result<(), SpecError> {
        let bad = |field, why: String| Err(SpecError::invalid(&self.name, field, why));
        if let Some(image) = &self.image
            && image.len() > IMAGE_MAX_BYTES
        {
            return bad(
                "image",
                format!("is {} bytes, above {IMAGE_MAX_BYTES}", image.len()),
            );
        }
        check_words(
            &self.name,
            "args",
            self.entrypoint
                .iter()
                .chain(&self.command)
                .chain(&self.args),
        )?;
        check_count(&self.name, "env", self.env.len(), ENV_MAX)?;
        for (key, value) in &self.env {
            check_text(&self.name, "env", key, ENV_NAME_MAX_BYTES)?;
            check_text(&self.name, "env", value, ENV_VALUE_MAX_BYTES)?;
        }
        check_count(&self.name, "label", self.labels.len(), LABELS_MAX)?;
        for (key, value) in &self.labels {
            check_text(&self.name, "label", key, LABEL_KEY_MAX_BYTES)?;
            check_text(&self.name, "label", value, LABEL_VALUE_MAX_BYTES)?;
        }
        check_count(&self.name, "publish", self.ports.len(), PORTS_MAX)?;
        check_count(
            &self.name,
            "constraint",
            self.constraints.len(),
            CONSTRAINTS_MAX,
        )?;
        for c in &self.constraints {
            check_text(
                &self.name,
                "constraint",
                &c.to_string(),
                CONSTRAINT_MAX_BYTES,
            )?;
        }
        Ok(())
    }

    fn validate_mounts(&self) -> Result<(), SpecError> {
        let bad = |why: String| Err(SpecError::invalid(&self.name, "mounts", why));
        if self.mounts.is_empty() {
            return Ok(());
        }
        if self.driver == Driver::Process {
            return bad(
                "the process driver runs replicas in the host's own filesystem and mounts nothing; give the path in --env, or use the docker driver".into(),
            );
        }
        check_count(&self.name, "mount", self.mounts.len(), MOUNTS_MAX)?;
        let mut targets = BTreeSet::new();
        for m in &self.mounts {
            if let Some(why) = m.problem() {
                return bad(format!("{m}: {why}"));
            }
            if !targets.insert(m.target.trim_end_matches('/')) {
                return bad(format!(
                    "{} is mounted twice; each target may appear once",
                    m.target
                ));
            }
        }
        Ok(())
    }

    fn validate_secrets(&self) -> Result<(), SpecError> {
        let bad = |why: String| Err(SpecError::invalid(&self.name, "secrets", why));
        check_count(&self.name, "secret", self.secrets.len(), SECRETS_MAX)?;
        let mut targets = BTreeSet::new();
        for s in &self.secrets {
            if let Some(why) = s.problem() {
                return bad(format!("{s}: {why}"));
            }
            if !targets.insert(s.target.as_str()) {
                return bad(format!(
                    "/run/secrets/{} is given twice; each target may appear once",
                    s.target
                ));
            }
        }
        Ok(())
    }

    fn validate_configs(&self) -> Result<(), SpecError> {
        let bad = |why: String| Err(SpecError::invalid(&self.name, "configs", why));
        check_count(&self.name, "config", self.configs.len(), CONFIGS_MAX)?;
        let mut targets = BTreeSet::new();
        for c in &self.configs {
            if let Some(why) = c.problem() {
                return bad(format!("{c}: {why}"));
            }
            if !targets.insert(c.target.as_str()) {
                return bad(format!(
                    "{} is given twice; each target may appear once",
                    c.target
                ));
            }
        }
        // A config's file is a file: none may sit inside another's path.
        for c in &self.configs {
            let inside = format!("{}/", c.target);
            if let Some(other) = self.configs.iter().find(|o| o.target.starts_with(&inside)) {
                return bad(format!(
                    "{} is inside {}, which is a config's file; give them targets apart",
                    other.target, c.target
                ));
            }
        }
        Ok(())
    }

    fn validate_ports(&self) -> Result<(), SpecError> {
        let mut seen = BTreeSet::new();
        let mut internal = BTreeSet::new();
        for p in &self.ports {
            if p.target == 0 {
                let why = format!("{p}: port numbers must be 1-65535");
                return Err(SpecError::invalid(&self.name, "ports", why));
            }
            let twice = match p.published_port() {
                Some(published) => !seen.insert((published, p.protocol)),
                // A target reached by name only: once per target and protocol.
                None => !internal.insert((p.target, p.protocol)),
            };
            if twice {
                let why = match p.published_port() {
                    Some(published) => format!(
                        "{published}/{} is published twice; each published port and protocol may appear once",
                        p.protocol
                    ),
                    None => format!(
                        "{}/{} is given twice; each target port and protocol may appear once",
                        p.target, p.protocol
                    ),
                };
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
        if h.interval_ms < HEALTH_INTERVAL_MIN_MS || h.timeout_ms == 0 {
            return bad(
                "interval must be at least 100ms and timeout above zero, e.g. 30s for both",
            );
        }
        if !(1..=HEALTH_RETRIES_MAX).contains(&h.retries) {
            return bad("retries must be 1 to 100, e.g. 3");
        }
        if h.response_time_max_ms == Some(0) {
            return bad("response_time_max must be above zero, e.g. 500ms, or unset");
        }
        for (what, ms) in [
            ("interval", h.interval_ms),
            ("timeout", h.timeout_ms),
            ("start period", h.start_period_ms),
            ("response time max", h.response_time_max_ms.unwrap_or(0)),
        ] {
            check_duration(&self.name, "health", what, ms)?;
        }
        match &h.probe {
            Probe::Command(argv) => check_words(&self.name, "health", argv),
            Probe::Http { path, .. } => {
                check_text(&self.name, "health", path, HEALTH_PATH_MAX_BYTES)
            }
        }
    }

    fn validate_autoscale(&self, limits: &Limits) -> Result<(), SpecError> {
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
        if a.max > limits.replicas_max {
            return bad(format!(
                "max {} is above the {} replicas a service may have in this cluster; use at most {}",
                a.max, limits.replicas_max, limits.replicas_max
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

/// A list of words (command and arguments, a probe's command) within its bounds.
fn check_words<'a>(
    service: &str,
    field: &'static str,
    words: impl IntoIterator<Item = &'a String>,
) -> Result<(), SpecError> {
    let mut count = 0;
    for word in words {
        count += 1;
        check_text(service, field, word, ARG_MAX_BYTES)?;
    }
    check_count(service, field, count, ARGS_MAX)
}

fn check_count(service: &str, field: &'static str, n: usize, max: usize) -> Result<(), SpecError> {
    if n <= max {
        return Ok(());
    }
    let why = format!("{n} entries, above the {max} allowed; keep at most {max}");
    Err(SpecError::invalid(service, field, why))
}

/// A text within `max` bytes and without NUL (no program can receive one).
fn check_text(service: &str, field: &'static str, text: &str, max: usize) -> Result<(), SpecError> {
    if text.len() > max {
        let start: String = text.chars().take(20).collect();
        let why = format!(
            "{start:?}... is {} bytes, above the {max} allowed for one entry",
            text.len()
        );
        return Err(SpecError::invalid(service, field, why));
    }
    if text.contains('\0') {
        let why = format!("{text:?} contains a NUL character; remove it");
        return Err(SpecError::invalid(service, field, why));
    }
    Ok(())
}

fn check_duration(
    service: &str,
    field: &'static str,
    what: &str,
    ms: u64,
) -> Result<(), SpecError> {
    if ms <= DURATION_MAX_MS {
        return Ok(());
    }
    let why = format!("{what} of {ms}ms is above a week (168h); use a shorter one, e.g. 30s");
    Err(SpecError::invalid(service, field, why))
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
        spec.validate(&Limits::default()).unwrap_err().to_string()
    }

    #[test]
    fn a_plain_spec_is_valid() {
        assert_eq!(
            ServiceSpec::docker("blog", "blog:v1").validate(&Limits::default()),
            Ok(())
        );
        let p = ServiceSpec {
            name: "api-v2.x_1".into(),
            driver: Driver::Process,
            command: vec!["/bin/sleep".into()],
            ..ServiceSpec::default()
        };
        assert_eq!(p.validate(&Limits::default()), Ok(()));
    }

    #[test]
    fn names_follow_the_dns_label_rule() {
        for bad in ["", "Blog", "-blog", "blog!", &"a".repeat(64)] {
            let e = error(&ServiceSpec::docker(bad, "img"));
            assert!(e.contains("name") && e.contains("a-z, 0-9"), "{bad}: {e}");
        }
        assert!(
            ServiceSpec::docker(&"a".repeat(63), "img")
                .validate(&Limits::default())
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
    fn mounts_need_the_docker_driver_and_distinct_targets() {
        let mut s = ServiceSpec::docker("db", "postgres:17");
        s.mounts = vec!["type=volume,source=db,target=/data".parse().unwrap()];
        assert!(s.validate(&Limits::default()).is_ok());
        s.mounts.push("type=tmpfs,target=/data/".parse().unwrap());
        let e = s.validate(&Limits::default()).unwrap_err().to_string();
        assert!(e.contains("mounted twice"), "{e}");
        s.mounts.pop();
        s.driver = Driver::Process;
        s.command = vec!["sleep".into()];
        let e = s.validate(&Limits::default()).unwrap_err().to_string();
        assert!(e.contains("process driver"), "{e}");
    }

    #[test]
    fn ports_are_unique_per_protocol() {
        let mut s = ServiceSpec::docker("blog", "img");
        s.ports = vec!["80:4000".parse().unwrap(), "80:4001".parse().unwrap()];
        assert!(error(&s).contains("80/tcp is published twice"));
        s.ports[1] = "80:4000/udp".parse().unwrap();
        assert!(s.validate(&Limits::default()).is_ok());
        s.ports.push(PortSpec {
            target: 0,
            ..s.ports[0]
        });
        assert!(error(&s).contains("1-65535"));
        s.ports = vec!["80:4000".parse().unwrap(), "4000".parse().unwrap()];
        assert!(
            s.validate(&Limits::default()).is_ok(),
            "a target both published and not"
        );
        s.ports.push("4000".parse().unwrap());
        assert!(error(&s).contains("4000/tcp is given twice"));
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
        s.validate(&Limits::default()).unwrap();
        s.replicas_max_per_node = 2;
        s.validate(&Limits::default()).unwrap();
        s.mode = Mode::Global;
        let e = error(&s);
        assert!(
            e.contains("replicas-max-per-node") && e.contains("replicated services only"),
            "{e}"
        );
        s.replicas_max_per_node = 0;
        s.validate(&Limits::default()).unwrap();
    }

    #[test]
    fn the_replica_bomb_is_refused_with_what_is_allowed() {
        let mut s = ServiceSpec::docker("boom", "img");
        s.mode = Mode::Replicated {
            replicas: 4_000_000_000,
        };
        let e = error(&s);
        assert!(e.contains("replicas") && e.contains("0 to 10000"), "{e}");
        s.mode = Mode::Replicated { replicas: 10_000 };
        assert_eq!(s.validate(&Limits::default()), Ok(()));
        let small = Limits {
            replicas_max: 100,
            ..Limits::default()
        };
        assert!(s.validate(&small).is_err());
        s.mode = Mode::Replicated { replicas: 3 };
        s.update.parallelism = 101;
        assert!(
            s.validate(&small)
                .unwrap_err()
                .to_string()
                .contains("parallelism")
        );
        s.update.parallelism = 0;
        s.autoscale = Some(Autoscale {
            min: 1,
            max: 101,
            cpu_target_percent: 70,
        });
        let e = s.validate(&small).unwrap_err().to_string();
        assert!(e.contains("autoscale") && e.contains("at most 100"), "{e}");
    }

    #[test]
    fn lists_and_texts_are_bounded() {
        let base = ServiceSpec::docker("blog", "img");
        let mut s = base.clone();
        for i in 0..=ENV_MAX {
            s.env.insert(format!("K{i}"), "v".into());
        }
        assert!(error(&s).contains("env: 257 entries"), "{}", error(&s));
        let mut s = base.clone();
        s.labels
            .insert("k".into(), "v".repeat(LABEL_VALUE_MAX_BYTES + 1));
        assert!(error(&s).contains("label"), "{}", error(&s));
        let mut s = base.clone();
        s.args = vec!["x".into(); ARGS_MAX + 1];
        assert!(error(&s).contains("args"), "{}", error(&s));
        let mut s = base.clone();
        s.args = vec!["a\0b".into()];
        assert!(error(&s).contains("NUL"), "{}", error(&s));
        let mut s = base.clone();
        s.ports = (1..=65)
            .map(|p| format!("{p}:80").parse().unwrap())
            .collect();
        assert!(error(&s).contains("publish"), "{}", error(&s));
        let mut s = base.clone();
        s.constraints = vec!["node.labels.a==b".parse().unwrap(); CONSTRAINTS_MAX + 1];
        assert!(error(&s).contains("constraint"), "{}", error(&s));
        let mut s = base.clone();
        s.image = Some("i".repeat(IMAGE_MAX_BYTES + 1));
        assert!(error(&s).contains("image"), "{}", error(&s));
    }

    #[test]
    fn the_encoded_size_is_bounded_and_does_not_grow_with_updates() {
        let mut s = ServiceSpec::docker("blog", "img");
        for i in 0..8 {
            s.env
                .insert(format!("K{i}"), "v".repeat(ENV_VALUE_MAX_BYTES - 100));
        }
        let e = error(&s);
        assert!(e.contains("bytes encoded, above the 65536"), "{e}");
        s.env.clear();
        for i in 0..3 {
            s.env
                .insert(format!("K{i}"), "v".repeat(ENV_VALUE_MAX_BYTES));
        }
        assert_eq!(s.validate(&Limits::default()), Ok(()));
        // Each update keeps one previous spec, never a chain: the record stays bounded.
        let mut current = s.clone();
        for _ in 0..5 {
            current = current.followed_by(s.clone(), false);
            assert_eq!(current.validate(&Limits::default()), Ok(()));
            let len = encoded_len(&current);
            assert!(len <= crate::spec::limits::SPEC_RECORD_MAX_BYTES, "{len}");
        }
        let mut nested = current.clone();
        nested.previous = Some(Box::new(current));
        assert!(error(&nested).contains("one level only"));
    }

    #[test]
    fn a_previous_spec_follows_the_same_rules() {
        let mut old = ServiceSpec::docker("blog", "img");
        old.mode = Mode::Replicated {
            replicas: 4_000_000_000,
        };
        let mut s = ServiceSpec::docker("blog", "img");
        s.previous = Some(Box::new(old));
        let e = error(&s);
        assert!(e.contains("previous") && e.contains("replicas"), "{e}");
    }

    #[test]
    fn health_checks_cannot_spin() {
        let mut s = ServiceSpec::docker("blog", "img");
        let mut check = HealthCheck::new(Probe::Http {
            path: "/".into(),
            port: None,
        });
        check.interval_ms = 0;
        s.health = Some(check.clone());
        assert!(error(&s).contains("at least 100ms"), "{}", error(&s));
        check.interval_ms = 100;
        check.retries = 1_000;
        s.health = Some(check.clone());
        assert!(error(&s).contains("retries"), "{}", error(&s));
        check.retries = 3;
        check.start_period_ms = u64::MAX;
        s.health = Some(check);
        assert!(error(&s).contains("above a week"), "{}", error(&s));
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
        assert_eq!(
            s.replicas_max_per_node, 0,
            "no limit, as before the field existed"
        );
        let back: ServiceSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let e = serde_json::from_str::<ServiceSpec>(r#"{"constraints":["zone=a"]}"#).unwrap_err();
        assert!(e.to_string().contains("use == or !="), "{e}");
    }
}
