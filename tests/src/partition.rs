//! Cuts between loopback addresses, made with iptables in the test's own namespace.

use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::run_bounded;

/// Drops traffic between two sets of loopback addresses with iptables (both directions),
/// until healed or dropped. Needs root; the rules carry a comment naming this process.
pub struct Partition {
    rules: Vec<Vec<String>>,
}

impl Partition {
    /// Cuts `a` off from `b`.
    pub fn new(a: &[std::net::IpAddr], b: &[std::net::IpAddr]) -> Result<Self> {
        let comment = format!("knit-e2e-{}", std::process::id());
        let mut partition = Self { rules: Vec::new() };
        for x in a {
            for y in b {
                for (src, dst) in [(x, y), (y, x)] {
                    let rule: Vec<String> = [
                        "INPUT",
                        "-s",
                        &src.to_string(),
                        "-d",
                        &dst.to_string(),
                        "-m",
                        "comment",
                        "--comment",
                        &comment,
                        "-j",
                        "DROP",
                    ]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect();
                    let out = run_bounded(
                        Command::new("iptables").arg("-I").args(&rule),
                        Duration::from_secs(10),
                    )?;
                    if !out.status.success() {
                        bail!(
                            "iptables failed (root needed): {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                    partition.rules.push(rule);
                }
            }
        }
        Ok(partition)
    }

    /// Removes the rules.
    pub fn heal(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        for rule in self.rules.drain(..) {
            let _ = run_bounded(
                Command::new("iptables").arg("-D").args(&rule),
                Duration::from_secs(10),
            );
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.remove();
    }
}
