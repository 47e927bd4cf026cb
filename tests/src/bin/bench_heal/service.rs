//! The service the benchmark heals, per driver, and the benchmark's own check that a
//! replica reported healthy really serves. Its tasks are read and judged by
//! `knit_tests::heal`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use knit_tests::{Cluster, images, remove_containers};

/// How long a replica may take to answer the benchmark's own HTTP check.
const ANSWER_LIMIT: Duration = Duration::from_secs(2);

/// What the replicas are.
#[derive(Debug, Clone)]
pub(crate) enum Workload {
    /// Python's `http.server` under `sh -c`, with knit's HTTP health check every 250 ms.
    Process {
        /// The interpreter replicas find on their plain `PATH`, started directly.
        python: String,
    },
    /// The test image's busybox `httpd`, with knit's HTTP health check every 250 ms.
    Docker {
        /// The image reference.
        image: String,
    },
}

impl Workload {
    /// The workload for `driver`; `None` (after a message) where Docker is missing.
    pub(crate) fn new(driver: &str) -> Result<Option<Self>> {
        match driver {
            "process" => Ok(Some(Self::Process {
                python: real_python()?,
            })),
            "docker" => Ok(images::busybox_image()?.map(|image| Self::Docker { image })),
            other => bail!("unknown driver {other}"),
        }
    }

    /// The driver's name.
    pub(crate) fn driver(&self) -> &'static str {
        match self {
            Self::Process { .. } => "process",
            Self::Docker { .. } => "docker",
        }
    }

    /// A service name of this run alone, so that a concurrent test's containers (or a
    /// previous run's) are neither counted nor removed.
    pub(crate) fn service_name(&self) -> String {
        format!("heal-{}-{}", self.driver(), std::process::id())
    }

    /// Creates the service of `replicas` replicas through `cluster`'s first peer.
    pub(crate) fn create(&self, cluster: &Cluster, service: &str, replicas: usize) -> Result<()> {
        let replicas = replicas.to_string();
        let mut args: Vec<String> = [
            "service",
            "create",
            "--name",
            service,
            "--replicas",
            &replicas,
            "-p",
            "18080:8080",
            "--restart-delay",
            "200ms",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // Both drivers: knit's own HTTP check every 250 ms (not the image's HEALTHCHECK,
        // whose first check comes a whole interval after the start), and a 2 s stop grace
        // (busybox httpd as PID 1 ignores SIGTERM).
        args.extend(
            [
                "--health-http",
                "/",
                "--health-interval",
                "250ms",
                "--health-timeout",
                "1s",
                "--health-retries",
                "3",
                "--health-start-period",
                "5s",
                "--stop-grace-period",
                "2s",
            ]
            .iter()
            .map(|s| (*s).to_owned()),
        );
        match self {
            Self::Process { python } => {
                let www = cluster.root().join("www");
                let script = format!(
                    "mkdir -p {www} && cd {www} && exec {python} -m http.server --bind 127.0.0.1 $PORT",
                    www = www.display()
                );
                args.extend(
                    ["--driver", "process", "--", "sh", "-c", &script]
                        .iter()
                        .map(|s| (*s).to_owned()),
                );
            }
            Self::Docker { image } => args.push(image.clone()),
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cluster.peers[0].cli_ok(&args)?;
        Ok(())
    }

    /// Removes what the service left behind outside the peers' data dirs.
    pub(crate) fn clean_up(&self, service: &str) {
        if matches!(self, Self::Docker { .. }) {
            remove_containers(&format!("knit.service={service}"));
        }
    }
}

/// The `python3` a replica finds: process replicas get a plain `PATH` (not the caller's,
/// which may lead to a version manager's shim under a home the replica's user cannot
/// read), so the first `python3` on it, started directly.
fn real_python() -> Result<String> {
    const REPLICA_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    REPLICA_PATH
        .split(':')
        .map(|dir| std::path::Path::new(dir).join("python3"))
        .find(|p| p.exists())
        .map(|p| p.display().to_string())
        .context("python3 is needed for the process driver's replicas: install it where a plain PATH finds it (e.g. /usr/bin)")
}

/// Whether a replica answers `GET /` with a 200 on `port` of one of `ips` (Docker publishes
/// on its peer's address, a process binds loopback): the benchmark's own check that a slot
/// reported healthy really serves.
pub(crate) fn answers(ips: &[std::net::IpAddr], port: u16) -> bool {
    ips.iter().any(|&ip| answers_on(ip, port))
}

fn answers_on(ip: std::net::IpAddr, port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&(ip, port).into(), ANSWER_LIMIT) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(ANSWER_LIMIT));
    if stream.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}
