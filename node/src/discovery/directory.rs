//! The names of services and the addresses they stand for, as this peer serves them: what
//! its DNS server answers, what Docker replicas are given as resolver and search domain,
//! and what process replicas find in their environment.
//!
//! A service `api` answers to `api` and `api.knit`. A service of a stack (label
//! `com.docker.stack.namespace=app`, named `app_api` as Swarm names them) answers also to
//! `api.app.knit`, and its replicas search `app.knit`, so that the short name `api` finds
//! the stack's own service first.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use knit_scheduler::ServiceSpec;

/// The label that names a service's stack, as `docker stack deploy` writes it.
pub(crate) const STACK_LABEL: &str = "com.docker.stack.namespace";
/// The domain of service names.
pub(crate) const DOMAIN: &str = "knit";
/// Service addresses put in a process replica's environment, at most: the environment
/// of a program is bounded (`ARG_MAX`).
const ENV_ADDRS_MAX: usize = 1024;

/// What this peer serves: its DNS server's address and every service's VIP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Directory {
    /// The DNS server's address, while it serves; `None`: replicas keep the host's
    /// resolvers.
    pub(crate) dns: Option<Ipv4Addr>,
    /// Every service's VIP, by service name.
    pub(crate) vips: BTreeMap<String, Ipv4Addr>,
    /// Every name answered (lower case, without the final dot) and its VIP.
    names: BTreeMap<String, Ipv4Addr>,
}

/// The stack a service belongs to and its name within the stack, when it has the stack
/// label and is named `<stack>_<name>`.
pub(crate) fn stack_of<'a>(
    service: &'a str,
    labels: &'a BTreeMap<String, String>,
) -> Option<(&'a str, &'a str)> {
    let stack = labels.get(STACK_LABEL)?.as_str();
    let short = service.strip_prefix(stack)?.strip_prefix('_')?;
    (!stack.is_empty() && !short.is_empty()).then_some((stack, short))
}

/// The search domain of a stack's replicas (`app.knit`), so that `api` finds `app_api`.
pub(crate) fn search_domain(spec: &ServiceSpec) -> Option<String> {
    stack_of(&spec.name, &spec.labels).map(|(stack, _)| format!("{stack}.{DOMAIN}"))
}

/// `KNIT_SERVICE_<NAME>_ADDR`: the name upper-cased, every other character than a letter
/// or digit made `_`.
pub(crate) fn env_name(service: &str) -> String {
    let name: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("KNIT_SERVICE_{name}_ADDR")
}

impl Directory {
    /// The directory of `specs`' services with `vips`, and the DNS server at `dns`.
    pub(crate) fn new(
        dns: Option<Ipv4Addr>,
        vips: &BTreeMap<String, Ipv4Addr>,
        specs: &BTreeMap<String, ServiceSpec>,
    ) -> Self {
        let mut names = BTreeMap::new();
        // A service's own names first: a stack's name never hides another service's.
        for (service, vip) in vips {
            names.insert(service.clone(), *vip);
            names.insert(format!("{service}.{DOMAIN}"), *vip);
        }
        for (service, vip) in vips {
            let Some(spec) = specs.get(service) else {
                continue;
            };
            if let Some((stack, short)) = stack_of(service, &spec.labels) {
                names
                    .entry(format!("{short}.{stack}.{DOMAIN}"))
                    .or_insert(*vip);
            }
        }
        Self {
            dns,
            vips: vips.clone(),
            names,
        }
    }

    /// The VIP `name` stands for: any case, with or without the final dot.
    pub(crate) fn lookup(&self, name: &str) -> Option<Ipv4Addr> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.names.get(&name.to_ascii_lowercase()).copied()
        } else {
            self.names.get(name).copied()
        }
    }

    /// Whether `name` is under the service domain (`knit` or `*.knit`): a name there that
    /// no service has is answered as absent, never asked of the host's resolvers.
    pub(crate) fn is_ours(name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        name.eq_ignore_ascii_case(DOMAIN)
            || name.len() > DOMAIN.len()
                && name.as_bytes()[name.len() - DOMAIN.len() - 1] == b'.'
                && name[name.len() - DOMAIN.len()..].eq_ignore_ascii_case(DOMAIN)
    }

    /// `KNIT_SERVICE_<NAME>_ADDR=<vip>` for every service (at most
    /// [`ENV_ADDRS_MAX`], in name order; when two names map to one variable, the first).
    pub(crate) fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for (service, vip) in &self.vips {
            if env.len() >= ENV_ADDRS_MAX {
                break;
            }
            env.entry(env_name(service))
                .or_insert_with(|| vip.to_string());
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> BTreeMap<String, ServiceSpec> {
        let mut stacked = ServiceSpec::docker("app_api", "img");
        stacked
            .labels
            .insert(STACK_LABEL.to_owned(), "app".to_owned());
        let mut wrong = ServiceSpec::docker("other_db", "img");
        wrong
            .labels
            .insert(STACK_LABEL.to_owned(), "app".to_owned());
        [ServiceSpec::docker("api", "img"), stacked, wrong]
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect()
    }

    fn directory() -> Directory {
        let vips = BTreeMap::from([
            ("api".to_owned(), Ipv4Addr::new(10, 213, 0, 7)),
            ("app_api".to_owned(), Ipv4Addr::new(10, 213, 0, 8)),
            ("other_db".to_owned(), Ipv4Addr::new(10, 213, 0, 9)),
        ]);
        Directory::new(Some(Ipv4Addr::new(10, 213, 0, 1)), &vips, &specs())
    }

    #[test]
    fn services_answer_to_their_names_in_any_case() {
        let d = directory();
        let api = Some(Ipv4Addr::new(10, 213, 0, 7));
        assert_eq!(d.lookup("api"), api);
        assert_eq!(d.lookup("api.knit."), api);
        assert_eq!(d.lookup("API.Knit"), api);
        assert_eq!(d.lookup("app_api"), Some(Ipv4Addr::new(10, 213, 0, 8)));
        assert_eq!(d.lookup("api.app.knit"), Some(Ipv4Addr::new(10, 213, 0, 8)));
        assert_eq!(d.lookup("db.app.knit"), None, "not named <stack>_<name>");
        assert_eq!(d.lookup("web"), None);
        assert_eq!(d.lookup("api.example.com"), None);
    }

    #[test]
    fn the_service_domain_is_known_by_its_suffix() {
        assert!(Directory::is_ours("knit"));
        assert!(Directory::is_ours("web.knit."));
        assert!(Directory::is_ours("x.app.KNIT"));
        assert!(!Directory::is_ours("knit.io"));
        assert!(!Directory::is_ours("getknit"));
        assert!(!Directory::is_ours("api"));
    }

    #[test]
    fn stacks_search_their_own_domain() {
        let specs = specs();
        assert_eq!(
            search_domain(&specs["app_api"]).as_deref(),
            Some("app.knit")
        );
        assert_eq!(search_domain(&specs["api"]), None);
        assert_eq!(search_domain(&specs["other_db"]), None);
    }

    #[test]
    fn process_replicas_get_one_variable_per_service() {
        assert_eq!(env_name("api"), "KNIT_SERVICE_API_ADDR");
        assert_eq!(env_name("app_api.v2-x"), "KNIT_SERVICE_APP_API_V2_X_ADDR");
        let env = directory().env();
        assert_eq!(env["KNIT_SERVICE_API_ADDR"], "10.213.0.7");
        assert_eq!(env["KNIT_SERVICE_APP_API_ADDR"], "10.213.0.8");
        assert_eq!(env.len(), 3);
    }
}
