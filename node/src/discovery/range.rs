//! The service address range (`--service-range`, 10.213.0.0/16 by default) and the
//! virtual IPs drawn from it: its first address is the peer's DNS server, and every
//! service gets one of the others, derived from its name.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The default range: private (RFC 1918), and outside the ranges that other software on
/// a host usually takes: Docker's default address pools (172.17.0.0/16 upwards and
/// 192.168.0.0/16), Swarm's overlays (10.0.0.0/8 from 10.0.0.0/24 up), Kubernetes'
/// defaults (10.96.0.0/12, 10.244.0.0/16), carrier-grade NAT and Tailscale
/// (100.64.0.0/10), and the benchmarking range that proxies use for fake addresses
/// (198.18.0.0/15). A host whose network does use it gets a clear refusal, not a
/// hijacked route (see `route.rs`), and `--service-range` picks another.
pub(crate) const DEFAULT_RANGE: &str = "10.213.0.0/16";

/// The widest and narrowest ranges accepted: a /30 still holds the DNS address and one
/// virtual IP.
const PREFIX_MIN: u8 = 8;
const PREFIX_MAX: u8 = 30;

/// A range of IPv4 addresses, `network/prefix`, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ServiceRange {
    network: Ipv4Addr,
    prefix: u8,
}

/// `--service-range` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid service range {input:?}: {why}; give an IPv4 range such as {DEFAULT_RANGE}, or `none` to turn service discovery off"
)]
pub(crate) struct RangeError {
    input: String,
    why: String,
}

impl ServiceRange {
    /// Every address of the range.
    fn size(self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    /// The address the peer's DNS server answers on: the first after the network's own.
    pub(crate) fn dns(self) -> Ipv4Addr {
        self.at(1)
    }

    /// How many virtual IPs it holds: every address but the network's, the DNS server's
    /// and the broadcast address.
    pub(crate) fn vip_count(self) -> u32 {
        self.size() - 3
    }

    /// The `i`-th virtual IP (`i < vip_count()`).
    fn vip(self, i: u32) -> Ipv4Addr {
        self.at(2 + i)
    }

    fn at(self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + offset)
    }

    /// Whether `ip` is in the range.
    pub(crate) fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    fn mask(self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// Whether the range and `network/prefix` share an address.
    pub(crate) fn overlaps(self, network: Ipv4Addr, prefix: u8) -> bool {
        let prefix = prefix.min(32);
        let shorter = prefix.min(self.prefix);
        let mask = if shorter == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(shorter))
        };
        u32::from(network) & mask == u32::from(self.network) & mask
    }
}

impl FromStr for ServiceRange {
    type Err = RangeError;

    fn from_str(input: &str) -> Result<Self, RangeError> {
        let err = |why: String| RangeError {
            input: input.to_owned(),
            why,
        };
        let Some((ip, prefix)) = input.trim().split_once('/') else {
            return Err(err("it has no /PREFIX".to_owned()));
        };
        let network: Ipv4Addr = ip
            .parse()
            .map_err(|_| err(format!("{ip:?} is not an IPv4 address")))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (PREFIX_MIN..=PREFIX_MAX).contains(p))
            .ok_or_else(|| {
                err(format!(
                    "the prefix must be {PREFIX_MIN} to {PREFIX_MAX}, not {prefix:?}"
                ))
            })?;
        let range = Self { network, prefix };
        let bare = Ipv4Addr::from(u32::from(network) & range.mask());
        if bare != network {
            return Err(err(format!(
                "{network} has bits set past /{prefix}: did you mean {bare}/{prefix}?"
            )));
        }
        Ok(range)
    }
}

impl fmt::Display for ServiceRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Whether the peer serves service names, and from which range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeSetting {
    /// `--service-range none`: no service addresses, no DNS server.
    Off,
    On(ServiceRange),
}

impl FromStr for RangeSetting {
    type Err = RangeError;

    fn from_str(input: &str) -> Result<Self, RangeError> {
        match input.trim() {
            "none" | "off" => Ok(Self::Off),
            range => range.parse().map(Self::On),
        }
    }
}

/// Every service's virtual IP. A name's VIP is the first free address at or after the one
/// its hash points to (xxh3 of the name, modulo the range), wrapping around, and it keeps
/// it for as long as the service exists: a service created later never moves an earlier
/// one. New names are placed in name order, so peers that saw the same services come and
/// go give the same addresses; nothing needs them to, as every peer answers names with
/// its own addresses and serves them itself.
#[derive(Debug, Clone)]
pub(crate) struct Vips {
    range: ServiceRange,
    by_name: BTreeMap<String, Ipv4Addr>,
    /// Which name holds each index of the range.
    taken: BTreeMap<u32, String>,
}

impl Vips {
    pub(crate) fn new(range: ServiceRange) -> Self {
        Self {
            range,
            by_name: BTreeMap::new(),
            taken: BTreeMap::new(),
        }
    }

    /// Keeps the VIPs of `names`, frees those of other names, and gives one to each new
    /// name; returns how many names got none (the range is full).
    pub(crate) fn sync<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) -> usize {
        let wanted: std::collections::BTreeSet<&str> = names.into_iter().collect();
        self.by_name
            .retain(|name, _| wanted.contains(name.as_str()));
        self.taken.retain(|_, name| wanted.contains(name.as_str()));
        let count = self.range.vip_count();
        let mut left_out = 0;
        for name in wanted {
            if self.by_name.contains_key(name) {
                continue;
            }
            if self.taken.len() >= count as usize {
                left_out += 1;
                continue;
            }
            let home = (xxhash_rust::xxh3::xxh3_64(name.as_bytes()) % u64::from(count)) as u32;
            // Not full, so a free index is found within `count` steps.
            let free = (0..count)
                .map(|step| (home + step) % count)
                .find(|i| !self.taken.contains_key(i));
            if let Some(i) = free {
                self.taken.insert(i, name.to_owned());
                self.by_name.insert(name.to_owned(), self.range.vip(i));
            }
        }
        left_out
    }

    /// Every service's VIP, by name.
    pub(crate) fn all(&self) -> &BTreeMap<String, Ipv4Addr> {
        &self.by_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> ServiceRange {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_read_and_say_what_is_wrong() {
        let r = range("10.213.0.0/16");
        assert_eq!(r.to_string(), "10.213.0.0/16");
        assert_eq!(r.dns(), Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(r.vip_count(), 65_533);
        assert!(r.contains(Ipv4Addr::new(10, 213, 255, 254)));
        assert!(!r.contains(Ipv4Addr::new(10, 214, 0, 1)));
        let e = "10.213.1.0/16".parse::<ServiceRange>().unwrap_err();
        assert!(e.to_string().contains("did you mean 10.213.0.0/16"), "{e}");
        let e = "10.213.0.0/31".parse::<ServiceRange>().unwrap_err();
        assert!(e.to_string().contains("8 to 30"), "{e}");
        assert!("10.213.0.0".parse::<ServiceRange>().is_err());
        assert!("fd00::/64".parse::<ServiceRange>().is_err());
        assert_eq!("none".parse::<RangeSetting>().unwrap(), RangeSetting::Off);
        assert_eq!(
            DEFAULT_RANGE.parse::<RangeSetting>().unwrap(),
            RangeSetting::On(range(DEFAULT_RANGE))
        );
    }

    #[test]
    fn overlaps_are_found_either_way() {
        let r = range("10.213.0.0/16");
        assert!(r.overlaps(Ipv4Addr::new(10, 0, 0, 0), 8));
        assert!(r.overlaps(Ipv4Addr::new(10, 213, 7, 0), 24));
        assert!(r.overlaps(Ipv4Addr::new(10, 213, 7, 9), 32));
        assert!(!r.overlaps(Ipv4Addr::new(10, 214, 0, 0), 16));
        assert!(!r.overlaps(Ipv4Addr::new(172, 17, 0, 0), 16));
        assert!(r.overlaps(Ipv4Addr::new(0, 0, 0, 0), 0), "a default route");
    }

    #[test]
    fn a_vip_comes_from_the_name_and_stays() {
        let r = range("10.213.0.0/16");
        let mut a = Vips::new(r);
        let mut b = Vips::new(r);
        assert_eq!(a.sync(["api", "web", "db"]), 0);
        b.sync(["db", "web", "api"]);
        assert_eq!(a.all(), b.all(), "the same names give the same addresses");
        let api = a.all()["api"];
        assert!(r.contains(api) && api != r.dns());
        a.sync(["api", "web", "db", "cache"]);
        assert_eq!(a.all()["api"], api, "a new service moves no one");
        a.sync(["api"]);
        assert_eq!(a.all().len(), 1);
        assert_eq!(a.all()["api"], api);
    }

    #[test]
    fn collisions_probe_to_the_next_free_address_and_a_full_range_says_so() {
        // A /29: network, DNS, five VIPs, broadcast.
        let r = range("10.213.0.0/29");
        let mut vips = Vips::new(r);
        let names: Vec<String> = (0..7).map(|i| format!("s{i}")).collect();
        let left_out = vips.sync(names.iter().map(String::as_str));
        assert_eq!(left_out, 2);
        let given: std::collections::BTreeSet<Ipv4Addr> = vips.all().values().copied().collect();
        assert_eq!(given.len(), 5, "five distinct addresses");
        let expected: std::collections::BTreeSet<Ipv4Addr> =
            (2..7).map(|i| Ipv4Addr::new(10, 213, 0, i)).collect();
        assert_eq!(
            given, expected,
            "never the network, DNS or broadcast address"
        );
        // Removing one frees its address for a name left out.
        let mut kept: Vec<String> = vips.all().keys().cloned().collect();
        let gone = kept.remove(0);
        let waiting = names
            .iter()
            .find(|n| !vips.all().contains_key(*n))
            .unwrap()
            .clone();
        kept.push(waiting.clone());
        assert_eq!(vips.sync(kept.iter().map(String::as_str)), 0);
        assert!(vips.all().contains_key(&waiting) && !vips.all().contains_key(&gone));
    }
}
