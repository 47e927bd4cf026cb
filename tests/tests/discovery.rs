//! Service discovery across hosts, on three peers of one machine (as `knit lab` runs
//! them, each with a service range of its own): a Docker replica of `web` on one host
//! reaches the service `api`, whose replicas run only on the other hosts and publish no
//! port, by its name through its peer's DNS server and virtual IP; a process replica
//! reaches it through `KNIT_SERVICE_API_ADDR`; and the host itself reaches the VIP.
//!
//! Needs root (the service range's local route) and Docker with the test image; skips with
//! a message otherwise, unless `KNIT_REQUIRE_DOCKER=1` (then a missing Docker fails).
//!
//! The test image's busybox is linked statically with glibc, whose `getaddrinfo` cannot
//! work without its shared modules (its `wget` crashes on any host name, `localhost`
//! included): the replica asks the name with busybox's `nslookup`, which speaks DNS
//! itself to the resolver Docker gave the container, then fetches the address it got.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use knit_tests::{Cluster, cluster_lock, http_get, images, is_root, wait_until};
use serde_json::Value;

/// What `web`'s replica runs: 120 rounds (then it idles) of asking `api`'s address and
/// fetching `/` from it, each answer a line of `/out/answers`.
const WEB_SCRIPT: &str = r#"i=0
while [ $i -lt 120 ]; do
  i=$((i+1))
  a=$(nslookup api 2>/dev/null | sed -n 's/^Address: \([0-9.]*\)$/\1/p' | head -n 1)
  echo "$a" > /out/vip.tmp && mv /out/vip.tmp /out/vip
  if [ -n "$a" ] && timeout 5 wget -q -O /out/answer "http://$a:8080/"; then
    cat /out/answer >> /out/answers
  fi
  sleep 0.5
done
exec sleep 600"#;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The node id (label `knit.node`) of the container whose host name is `hostname`.
fn node_of_container(hostname: &str) -> Option<String> {
    let out = knit_tests::run_bounded(
        std::process::Command::new("docker").args([
            "inspect",
            "--format",
            "{{index .Config.Labels \"knit.service\"}} {{index .Config.Labels \"knit.node\"}}",
            hostname,
        ]),
        Duration::from_secs(20),
    )
    .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (service, node) = text.trim().split_once(' ')?;
    (service == "api").then(|| node.to_owned())
}

/// This peer's VIP of `service`, from `service ls --format json`.
fn vip(cluster: &Cluster, peer: usize, service: &str) -> Option<String> {
    let rows = cluster.peers[peer].services().ok()?;
    let row = rows.iter().find(|r| r["name"] == service)?;
    row["vip"].as_str().map(str::to_owned)
}

fn healthy(cluster: &Cluster, service: &str) -> usize {
    cluster.peers[0]
        .cli_json::<Vec<Value>>(&["service", "ps", service])
        .unwrap_or_default()
        .iter()
        .filter(|t| t["state"] == "running" && t["health"] == "healthy")
        .count()
}

#[test]
fn services_reach_each_other_by_name_across_hosts() {
    if !is_root() {
        eprintln!(
            "skipping: service discovery adds a local route for its service range, which needs root"
        );
        return;
    }
    let Some(image) = images::busybox_image().unwrap() else {
        return;
    };
    let _lock = cluster_lock();
    let cluster = Cluster::start(3, "fast").unwrap();
    let ids: Vec<String> = cluster.peers.iter().map(|p| p.node_id().unwrap()).collect();
    let p0 = &cluster.peers[0];

    // api: two replicas, a target port only, never on p0; each answers its host name.
    p0.cli_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "api",
        "--replicas",
        "2",
        "-p",
        "8080",
        "--constraint",
        "node.name!=p0",
        &image,
        "sh",
        "-c",
        "hostname > /www/index.html && exec httpd -f -p 8080 -h /www",
    ])
    .unwrap();
    let (_, took) = wait_until(Duration::from_secs(90), "2 healthy api replicas", || {
        (healthy(&cluster, "api") == 2).then_some(())
    })
    .unwrap();
    eprintln!("api healthy on p1/p2 after {took:?}");
    let api_vip = vip(&cluster, 0, "api").expect("p0 gives api a VIP");
    let inspect = p0.spec("api").unwrap().expect("api inspected");
    assert_eq!(inspect["vip"], api_vip.as_str(), "service inspect shows it");
    assert!(
        inspect["ports"][0].get("published").is_none_or(|p| p == 0),
        "{inspect}"
    );

    // web, on p0: asks for api by name, and fetches from what it got.
    let out = cluster.root().join("web-out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mount = format!("type=bind,source={},target=/out", out.display());
    p0.cli_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        // It serves nothing: the image's HEALTHCHECK would call it unhealthy.
        "--no-healthcheck",
        "--constraint",
        "node.name==p0",
        "--mount",
        &mount,
        &image,
        "sh",
        "-c",
        WEB_SCRIPT,
    ])
    .unwrap();
    let (hosts, took) = wait_until(
        Duration::from_secs(90),
        "answers from both api replicas, by name",
        || {
            let hosts: BTreeSet<String> = read(&out.join("answers"))
                .lines()
                .map(str::to_owned)
                .collect();
            (hosts.len() >= 2).then_some(hosts)
        },
    )
    .unwrap_or_else(|e| panic!("{e}: web saw vip {:?}", read(&out.join("vip"))));
    eprintln!("web reached both api replicas by name {took:?} after its create: {hosts:?}");
    assert_eq!(
        read(&out.join("vip")).trim(),
        api_vip,
        "p0's DNS gave p0's VIP"
    );
    for host in &hosts {
        let node = node_of_container(host).unwrap_or_else(|| panic!("{host} is no api container"));
        assert_ne!(node, ids[0], "the answer came from another host than web's");
    }

    // The host reaches the VIP itself.
    let addr = format!("{api_vip}:8080").parse().unwrap();
    let answer = http_get(addr, "/", Duration::from_secs(10)).expect("the VIP from the host");
    assert!(hosts.contains(answer.trim()), "{answer}");

    // A process replica on p2 reaches api through KNIT_SERVICE_API_ADDR.
    let script = format!(
        "echo $KNIT_SERVICE_API_ADDR > {o}/probe-vip; for i in $(seq 30); do timeout 5 busybox wget -q -O {o}/probe.tmp http://$KNIT_SERVICE_API_ADDR:8080/ && mv {o}/probe.tmp {o}/probe && break; sleep 0.5; done; exec sleep 600",
        o = out.display()
    );
    p0.cli_ok(&[
        "service",
        "create",
        "--detach",
        "--driver",
        "process",
        "--name",
        "probe",
        "--constraint",
        "node.name==p2",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .unwrap();
    let (answer, _) = wait_until(
        Duration::from_secs(60),
        "the process replica's fetch",
        || {
            let answer = read(&out.join("probe"));
            (!answer.is_empty()).then_some(answer)
        },
    )
    .unwrap_or_else(|e| panic!("{e}: it had {:?}", read(&out.join("probe-vip"))));
    assert!(hosts.contains(answer.trim()), "{answer}");
    assert_eq!(
        read(&out.join("probe-vip")).trim(),
        vip(&cluster, 2, "api").expect("p2's VIP of api"),
        "its own peer's address"
    );

    // Every peer has a range of its own, so the three VIPs differ; /metrics counts.
    let vips: BTreeSet<String> = (0..3).filter_map(|i| vip(&cluster, i, "api")).collect();
    assert_eq!(vips.len(), 3, "{vips:?}");
    let metrics = p0.metrics_text(Duration::from_secs(10)).unwrap();
    assert!(
        metrics.contains(&format!(
            "knit_service_vip{{service=\"api\",vip=\"{api_vip}\"}} 1"
        )),
        "{metrics}"
    );
    let connections = metrics
        .lines()
        .find(|l| {
            l.starts_with("knit_service_address_connections_total{service=\"api\",port=\"8080\"}")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(connections >= 2, "{connections} connections counted");
    let found = metrics
        .lines()
        .find(|l| l.starts_with("knit_dns_queries_total{answer=\"found\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(found >= 1, "{found} names answered");
}
