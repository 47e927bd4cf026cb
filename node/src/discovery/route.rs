//! The route that makes the service range this host's own: `ip route replace local
//! <range> dev lo` (iproute2). With it the peer can listen on any address of the range
//! without assigning each one (the kernel's "AnyIP"), the host reaches them, and so do
//! containers, through their bridge's gateway. It needs `CAP_NET_ADMIN`.
//!
//! Before adding it the peer reads every route of the host (`ip -4 route show table all`)
//! and refuses a range that any of them overlaps: taking a range the host's network uses
//! would cut the host off from it. `replace` makes a route left by a peer that was killed
//! this peer's own again; [`LocalRoute::remove`] deletes it when the peer stops.

use std::time::Duration;

use tokio::process::Command;

use super::range::ServiceRange;

/// The limit on one `ip` command.
const IP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the range cannot be made local.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    #[error(
        "cannot run `ip` ({0}); install iproute2, or turn service discovery off with --service-range none"
    )]
    NoIp(std::io::Error),
    #[error("`ip {command}` did not finish within {IP_TIMEOUT:?}")]
    Timeout { command: String },
    #[error(
        "`ip {command}` failed: {why}; the local route of the service range needs CAP_NET_ADMIN: run the peer as root or give it that capability, or turn service discovery off with --service-range none"
    )]
    Refused { command: String, why: String },
    #[error(
        "the service range {range} overlaps this host's route `{route}`; pick a free range with --service-range (or KNIT_SERVICE_RANGE)"
    )]
    Clash { range: ServiceRange, route: String },
}

/// The first route of `ip -4 -o route show table all`'s output that shares an address
/// with `range`, other than the range's own local route (a peer's, maybe left by one that
/// was killed). Default routes do not count.
pub(crate) fn clash(range: ServiceRange, routes: &str) -> Option<String> {
    const TYPES: [&str; 10] = [
        "unicast",
        "local",
        "broadcast",
        "anycast",
        "multicast",
        "blackhole",
        "unreachable",
        "prohibit",
        "throw",
        "nat",
    ];
    let ours = format!("local {range} dev lo ");
    routes.lines().map(str::trim).find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let dest = match words.as_slice() {
            [kind, dest, ..] if TYPES.contains(kind) => *dest,
            [dest, ..] => *dest,
            [] => return None,
        };
        if dest == "default" || format!("{line} ").starts_with(&ours) {
            return None;
        }
        let (ip, prefix) = dest.split_once('/').unwrap_or((dest, "32"));
        let (Ok(ip), Ok(prefix)) = (ip.parse(), prefix.parse::<u8>()) else {
            return None;
        };
        range.overlaps(ip, prefix).then(|| line.to_owned())
    })
}

/// Runs `ip ARGS`; its standard output.
async fn ip(args: &[&str]) -> Result<String, RouteError> {
    let command = args.join(" ");
    let run = Command::new("ip").args(args).kill_on_drop(true).output();
    let out = match tokio::time::timeout(IP_TIMEOUT, run).await {
        Err(_) => return Err(RouteError::Timeout { command }),
        Ok(Err(e)) => return Err(RouteError::NoIp(e)),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(RouteError::Refused { command, why });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The service range's local route, while the peer holds it.
#[derive(Debug)]
pub(crate) struct LocalRoute {
    range: ServiceRange,
}

impl LocalRoute {
    /// Makes `range` local to this host, unless one of the host's routes overlaps it.
    pub(crate) async fn add(range: ServiceRange) -> Result<Self, RouteError> {
        let routes = ip(&["-4", "-o", "route", "show", "table", "all"]).await?;
        if let Some(route) = clash(range, &routes) {
            return Err(RouteError::Clash { range, route });
        }
        let cidr = range.to_string();
        ip(&["route", "replace", "local", &cidr, "dev", "lo"]).await?;
        Ok(Self { range })
    }

    /// Deletes the route.
    pub(crate) async fn remove(self) {
        let cidr = self.range.to_string();
        if let Err(e) = ip(&["route", "del", "local", &cidr, "dev", "lo"]).await {
            tracing::warn!(range = %self.range, error = %e, "cannot remove the service range's local route");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "default via 192.0.2.1 dev eth0 \n\
        172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1 linkdown \n\
        192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2 \n\
        local 10.213.0.0/16 dev lo table local scope host \n\
        local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1 \n\
        broadcast 127.255.255.255 dev lo table local proto kernel scope link src 127.0.0.1 \n\
        local 192.0.2.2 dev eth0 table local proto kernel scope host src 192.0.2.2 \n";

    #[test]
    fn a_free_range_and_its_own_stale_route_do_not_clash() {
        let range: ServiceRange = "10.213.0.0/16".parse().unwrap();
        assert_eq!(clash(range, ROUTES), None);
    }

    #[test]
    fn a_range_the_host_uses_clashes_whatever_the_route_type() {
        let range: ServiceRange = "172.17.0.0/24".parse().unwrap();
        assert!(
            clash(range, ROUTES)
                .unwrap()
                .starts_with("172.17.0.0/16 dev docker0")
        );
        let range: ServiceRange = "192.0.2.0/30".parse().unwrap();
        assert!(clash(range, ROUTES).unwrap().starts_with("192.0.2.0/24"));
        let range: ServiceRange = "10.213.0.0/24".parse().unwrap();
        assert!(
            clash(range, ROUTES)
                .unwrap()
                .starts_with("local 10.213.0.0/16"),
            "another range's route is not ours"
        );
        let lan = "10.0.0.0/8 dev eth1 proto kernel scope link src 10.1.2.3\n";
        let range: ServiceRange = "10.213.0.0/16".parse().unwrap();
        assert!(clash(range, lan).is_some());
    }
}
