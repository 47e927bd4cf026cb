//! Hosts in network namespaces the test creates itself: one namespace per host, each with
//! a veth to a bridge that lives in a namespace of its own (nothing is added to the host's
//! own network), addresses in `10.<a>.<b>.0/24` with `a.b` from the test's process id.
//! Faults are `iptables` rules inside the hosts' namespaces: cuts (symmetric or one way)
//! and random loss (the `statistic` match). Dropping a [`Net`] deletes every namespace,
//! which deletes its links and rules.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::run_bounded;

/// A switch and `n` hosts.
pub struct Net {
    prefix: String,
    subnet: [u8; 3],
    hosts: usize,
}

/// Runs `ip`/`iptables` with a time limit; fails with its stderr.
fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = run_bounded(Command::new(program).args(args), Duration::from_secs(20))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Net {
    /// Creates the switch and `hosts` hosts (root needed).
    pub fn new(hosts: usize) -> Result<Self> {
        let pid = std::process::id();
        let net = Self {
            prefix: format!("kn{}", pid % 100_000),
            subnet: [
                10,
                u8::try_from(200 + pid % 50).unwrap_or(200),
                u8::try_from((pid / 50) % 250 + 1).unwrap_or(1),
            ],
            hosts,
        };
        let switch = net.switch();
        net.delete();
        run("ip", &["netns", "add", &switch])?;
        run(
            "ip",
            &["-n", &switch, "link", "add", "br0", "type", "bridge"],
        )?;
        run("ip", &["-n", &switch, "link", "set", "br0", "up"])?;
        for i in 0..hosts {
            let ns = net.namespace(i);
            let (inner, outer) = (format!("{}a{i}", net.prefix), format!("{}b{i}", net.prefix));
            run("ip", &["netns", "add", &ns])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &[
                    "link", "add", &inner, "netns", &ns, "type", "veth", "peer", "name", &outer,
                    "netns", &switch,
                ],
            )?;
            run("ip", &["-n", &ns, "link", "set", &inner, "name", "eth0"])?;
            let addr = format!("{}/24", net.addr(i));
            run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run(
                "ip",
                &["-n", &switch, "link", "set", &outer, "master", "br0"],
            )?;
            run("ip", &["-n", &switch, "link", "set", &outer, "up"])?;
        }
        Ok(net)
    }

    /// The namespace of host `i`.
    pub fn namespace(&self, i: usize) -> String {
        format!("{}h{i}", self.prefix)
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    /// The address of host `i`.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, u8::try_from(i + 1).unwrap_or(250))
    }

    /// Adds a rule to host `i`'s INPUT chain.
    fn input(&self, i: usize, rule: &[&str]) -> Result<()> {
        let ns = self.namespace(i);
        let mut args = vec!["netns", "exec", &ns, "iptables", "-A", "INPUT"];
        args.extend_from_slice(rule);
        run("ip", &args)
    }

    /// Host `to` drops every packet from host `from`: a one-way cut.
    pub fn cut_one_way(&self, from: usize, to: usize) -> Result<()> {
        let src = self.addr(from).to_string();
        self.input(to, &["-s", &src, "-j", "DROP"])
    }

    /// Cuts `a` and `b` apart, both ways.
    pub fn cut(&self, a: &[usize], b: &[usize]) -> Result<()> {
        for &x in a {
            for &y in b {
                self.cut_one_way(x, y)?;
                self.cut_one_way(y, x)?;
            }
        }
        Ok(())
    }

    /// Every host drops each packet it receives from another host with probability
    /// `percent`/100.
    pub fn loss(&self, percent: u32) -> Result<()> {
        let probability = format!("{:.2}", f64::from(percent) / 100.0);
        let subnet = format!(
            "{}.{}.{}.0/24",
            self.subnet[0], self.subnet[1], self.subnet[2]
        );
        for i in 0..self.hosts {
            self.input(
                i,
                &[
                    "-s",
                    &subnet,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Packets host `i`'s rules dropped so far (proof that a fault bites).
    pub fn dropped(&self, i: usize) -> Result<u64> {
        let ns = self.namespace(i);
        let out = run_bounded(
            Command::new("ip").args([
                "netns", "exec", &ns, "iptables", "-L", "INPUT", "-v", "-n", "-x",
            ]),
            Duration::from_secs(20),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("DROP"))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum())
    }

    /// Removes every fault.
    pub fn heal(&self) -> Result<()> {
        for i in 0..self.hosts {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.namespace(i),
                    "iptables",
                    "-F",
                    "INPUT",
                ],
            )?;
        }
        Ok(())
    }

    /// Deletes the namespaces (with their links and rules), whatever exists of them.
    fn delete(&self) {
        for i in 0..self.hosts {
            let _ = run("ip", &["netns", "del", &self.namespace(i)]);
        }
        let _ = run("ip", &["netns", "del", &self.switch()]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.delete();
    }
}
