//! The `docker` driver: each replica is a container run by the local Docker Engine, through
//! its API on the Unix socket (bollard).
//!
//! Containers carry the labels of [`super::labels`], so that [`DockerDriver::list`] finds
//! what this node runs after a restart of the peer, and are named
//! `knit-<slot>-<random>` (`knit-blog.3-1f2e3d4c`). Docker never restarts them itself
//! (restart policy `no`): knit's reconcile loop decides. Each target port is published on a
//! host port Docker picks; the forwarder reads the mapping from [`Replica::host_ports`].
//!
//! An image is taken from the local store when present, else pulled with the credentials
//! `knit login` stored for its registry ([`Launch::registry`]), or else those of
//! `KNIT_REGISTRY_USER` / `KNIT_REGISTRY_PASSWORD` when set. Every API call is bounded by a
//! timeout. This module does not decide anything: it starts, stops, lists and probes.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum,
    HealthConfig, HealthStatusEnum, HostConfig, HostConfigLogConfig, Mount as DockerMount,
    MountType, MountVolumeOptions, PortBinding, PortMap, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures_util::{StreamExt, TryStreamExt};
use knit_scheduler::spec::MountKind;
use knit_scheduler::{Health, NodeId, ReplicaState, ServiceSpec, SlotId};
use tokio::sync::Notify;

use super::{DriverError, Launch, Replica, labels};

/// The limit on reaching the engine when connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The limit on one ordinary API call (create, start, inspect, list, remove, exec).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The limit on pulling one image.
pub(super) const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// Containers inspected at once by [`DockerDriver::list`].
const INSPECTS_IN_FLIGHT_MAX: usize = 8;

/// Runs replicas as Docker containers.
pub(crate) struct DockerDriver {
    /// The API client, its version negotiated with the engine.
    docker: Docker,
    /// The event stream and what it keeps between full lists.
    watch: watch::Watch,
    /// Containers inspected so far (for tests and benchmarks of the engine's load).
    inspects: AtomicU64,
    /// The host address replicas' ports are published on: the one peers reach this host
    /// at, and the ingress forwards to, never every interface, so the ingress cannot be
    /// bypassed from outside.
    publish_ip: IpAddr,
    /// Containers made ahead of a takeover (see [`prepared`]).
    prepared: prepared::Registry,
}

/// Runs `call`, turning a timeout into bollard's own timeout error.
async fn within<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, DockerError>>,
) -> Result<T, DockerError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(DockerError::RequestTimeoutError))
}

/// The engine's own words for an error, without bollard's wrapping.
fn reason(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        DockerError::RequestTimeoutError => "the Docker engine did not answer in time".into(),
        other => other.to_string(),
    }
}

fn failed(what: &str, e: &DockerError) -> DriverError {
    DriverError::Failed(format!("docker {what}: {}", reason(e)))
}

fn status_code(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's socket path for `DOCKER_HOST` (`unix://PATH`, or unset: the default).
fn engine_socket(docker_host: Option<&str>) -> Result<String, DriverError> {
    match docker_host.map(str::trim).filter(|h| !h.is_empty()) {
        None => Ok(DEFAULT_SOCKET.to_owned()),
        Some(host) => match host.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => Ok(path.to_owned()),
            _ => Err(DriverError::Unavailable(format!(
                "DOCKER_HOST={host}: knit's docker driver talks to a local engine over a Unix \
                 socket only; give DOCKER_HOST=unix:///path/to/docker.sock or unset it"
            ))),
        },
    }
}

/// The engine's usual socket.
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// bollard's read/write timeout per connection (s); calls have their own, shorter ones.
const SOCKET_TIMEOUT_S: u64 = 120;

fn is_not_found(e: &DockerError) -> bool {
    status_code(e) == Some(404)
}

impl DockerDriver {
    /// Connects to the engine on its Unix socket (`$DOCKER_HOST` when it names one, as the
    /// docker CLI does, else `/var/run/docker.sock`); `Unavailable` when there is none.
    /// Replicas' ports will be published on `publish_ip`.
    pub(crate) async fn connect(
        publish_ip: IpAddr,
        tasks: &crate::tasks::Tasks,
    ) -> Result<Self, DriverError> {
        let socket = engine_socket(std::env::var("DOCKER_HOST").ok().as_deref())?;
        let unavailable = |e: &DockerError| {
            DriverError::Unavailable(format!(
                "no Docker engine on {socket} ({}); start Docker, or run \
                 services with the process driver",
                reason(e)
            ))
        };
        let docker = Docker::connect_with_socket(&socket, SOCKET_TIMEOUT_S, API_DEFAULT_VERSION)
            .map_err(|e| unavailable(&e))?;
        let docker = within(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|e| unavailable(&e))?;
        within(CONNECT_TIMEOUT, docker.ping())
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(Self {
            docker,
            watch: watch::Watch::new(tasks),
            inspects: AtomicU64::new(0),
            publish_ip,
            prepared: prepared::Registry::default(),
        })
    }

    /// The address replicas' ports are published on.
    pub(crate) fn publish_ip(&self) -> IpAddr {
        self.publish_ip
    }

    /// Woken when the engine reports an event about one of this node's containers.
    pub(crate) fn changed(&self) -> Arc<Notify> {
        self.watch.changed.clone()
    }

    /// Containers inspected since the driver connected.
    #[cfg(test)]
    pub(crate) fn inspects(&self) -> u64 {
        self.inspects.load(Ordering::Relaxed)
    }

    /// Inspects `ids`, a few at a time.
    async fn inspect_all(
        &self,
        ids: Vec<String>,
    ) -> Vec<(String, Result<ContainerInspectResponse, DockerError>)> {
        self.inspects.fetch_add(ids.len() as u64, Ordering::Relaxed);
        futures_util::stream::iter(ids)
            .map(|id| async move {
                let result = within(CALL_TIMEOUT, self.docker.inspect_container(&id, None)).await;
                (id, result)
            })
            .buffered(INSPECTS_IN_FLIGHT_MAX)
            .collect()
            .await
    }

    /// Starts one replica: makes sure the image is here, creates the container, starts it
    /// and reads back the host ports. A container that cannot start is removed.
    pub(crate) async fn start(&self, launch: &Launch) -> Result<Replica, DriverError> {
        let image = launch.spec.image.as_deref().ok_or_else(|| {
            DriverError::Failed(format!(
                "service {} has no image; the docker driver needs one",
                launch.spec.name
            ))
        })?;
        if let Some(id) = self.take_prepared(launch).await
            && let Some(replica) = self.start_prepared(&id, launch).await
        {
            self.watch.started(&launch.node, &replica);
            return Ok(replica);
        }
        self.ensure_image(image, launch.registry.as_ref()).await?;
        let options = CreateContainerOptionsBuilder::default()
            .name(&container_name(&launch.slot))
            .build();
        let body = container_body(launch, image, self.publish_ip);
        let created = within(
            CALL_TIMEOUT,
            self.docker.create_container(Some(options), body),
        )
        .await
        .map_err(|e| failed("create", &e))?;
        let id = created.id;
        if let Err(e) = within(CALL_TIMEOUT, self.docker.start_container(&id, None)).await {
            self.remove(&id).await.ok();
            return Err(failed(&format!("start of {image}"), &e));
        }
        let inspect = within(CALL_TIMEOUT, self.docker.inspect_container(&id, None))
            .await
            .map_err(|e| failed("inspect", &e))?;
        let replica = replica_from(&inspect)
            .map_err(|why| DriverError::Failed(format!("container {id} just started: {why}")))?;
        // The next list shows it, whether or not its events have come by then.
        self.watch.started(&launch.node, &replica);
        Ok(replica)
    }

    /// Stops a container (its stop signal, then SIGKILL after `grace`) and removes it. A container
    /// that no longer exists is stopped already.
    pub(crate) async fn stop(&self, runtime_id: &str, grace: Duration) -> Result<(), DriverError> {
        let grace_s = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let grace_s = i32::try_from(grace_s).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(grace_s).build();
        let stopped = within(
            grace + CALL_TIMEOUT,
            self.docker.stop_container(runtime_id, Some(options)),
        )
        .await;
        match stopped {
            Err(e) if is_not_found(&e) => {
                self.watch.inspected(runtime_id, None);
                return Ok(());
            }
            // The forced remove below kills what the stop could not.
            Err(e) => tracing::warn!(runtime_id, error = %reason(&e), "docker stop failed"),
            Ok(()) => {}
        }
        self.remove(runtime_id).await
    }

    /// Removes a container, killing it if it runs; a missing one is success.
    async fn remove(&self, runtime_id: &str) -> Result<(), DriverError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match within(
            CALL_TIMEOUT,
            self.docker.remove_container(runtime_id, Some(options)),
        )
        .await
        {
            Ok(()) => {
                self.watch.inspected(runtime_id, None);
                Ok(())
            }
            Err(e) if is_not_found(&e) => {
                self.watch.inspected(runtime_id, None);
                Ok(())
            }
            // 409: a removal is already in progress; the next list looks again.
            Err(e) if status_code(&e) == Some(409) && reason(&e).contains("in progress") => {
                self.watch.mark(runtime_id);
                Ok(())
            }
            Err(e) => {
                self.watch.mark(runtime_id);
                Err(failed(&format!("remove {runtime_id}"), &e))
            }
        }
    }

    /// Every container labelled with `node`, running or not. Containers whose labels do not
    /// read as a knit replica are skipped (and logged). Between full lists (see
    /// [`watch`]), only the containers the event stream named are inspected again.
    pub(crate) async fn list(&self, node: &str) -> Result<Vec<Replica>, DriverError> {
        let ids = match self.watch.due(&self.docker, node) {
            watch::Due::Full => {
                let started = std::time::Instant::now();
                let replicas = self.list_all(node).await?;
                self.watch.listed(started, &replicas);
                return Ok(replicas);
            }
            watch::Due::Dirty(ids) => ids,
        };
        let mut failure = None;
        for (id, inspect) in self.inspect_all(ids).await {
            match inspect {
                Err(e) if is_not_found(&e) => self.watch.inspected(&id, None),
                Err(e) => {
                    self.watch.mark(&id);
                    failure = Some(failed(&format!("inspect {id}"), &e));
                }
                Ok(inspect) if prepared::unstarted(&inspect) => self.watch.inspected(&id, None),
                Ok(inspect) => match replica_from(&inspect) {
                    Ok(replica) => self.watch.inspected(&id, Some(replica)),
                    Err(why) => {
                        tracing::warn!(container = %id, %why, "skipping container");
                        self.watch.inspected(&id, None);
                    }
                },
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let mut replicas: Vec<Replica> = self.watch.lock().replicas.values().cloned().collect();
        replicas.sort_by(|a, b| (&a.slot, &a.runtime_id).cmp(&(&b.slot, &b.runtime_id)));
        Ok(replicas)
    }

    /// Lists and inspects every container labelled with `node`.
    async fn list_all(&self, node: &str) -> Result<Vec<Replica>, DriverError> {
        let filters = HashMap::from([("label", vec![format!("{}={node}", labels::NODE)])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = within(CALL_TIMEOUT, self.docker.list_containers(Some(options)))
            .await
            .map_err(|e| failed("list", &e))?;
        let ids: Vec<String> = summaries.into_iter().filter_map(|c| c.id).collect();
        let mut replicas = Vec::new();
        for (id, inspect) in self.inspect_all(ids).await {
            match inspect {
                // Removed between the list and the inspect.
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(failed(&format!("inspect {id}"), &e)),
                Ok(inspect) if prepared::unstarted(&inspect) => {
                    let name = inspect.name.as_deref().unwrap_or_default();
                    if !self.prepared.knows(name) {
                        // Left by an earlier run of this peer.
                        tracing::info!(container = %id, "removing a container prepared by an earlier run");
                        self.remove(&id).await.ok();
                    }
                }
                Ok(inspect) => match replica_from(&inspect) {
                    Ok(replica) => replicas.push(replica),
                    Err(why) => tracing::warn!(container = %id, %why, "skipping container"),
                },
            }
        }
        replicas.sort_by(|a, b| (&a.slot, &a.runtime_id).cmp(&(&b.slot, &b.runtime_id)));
        Ok(replicas)
    }

    /// Runs `command` inside the container (docker exec): true when it exits 0 within
    /// `timeout`. A command still running at the timeout is left to finish on its own (the
    /// API cannot kill an exec) and counts as a failure.
    /// The CPU time the container has used so far, in nanoseconds.
    pub(crate) async fn cpu_time_ns(&self, runtime_id: &str) -> Option<u64> {
        if let Some(ns) = cgroup_cpu_ns(Path::new(CGROUP_ROOT), runtime_id) {
            return Some(ns);
        }
        let options = bollard::query_parameters::StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stats = self.docker.stats(runtime_id, Some(options));
        let sample = tokio::time::timeout(CALL_TIMEOUT, stats.next())
            .await
            .ok()??
            .ok()?;
        sample.cpu_stats?.cpu_usage?.total_usage
    }

    pub(crate) async fn exec_probe(
        &self,
        runtime_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<bool, DriverError> {
        let options = CreateExecOptions {
            cmd: Some(command.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = within(CALL_TIMEOUT, self.docker.create_exec(runtime_id, options))
            .await
            .map_err(|e| failed(&format!("exec in {runtime_id}"), &e))?;
        let run = async {
            if let StartExecResults::Attached { mut output, .. } =
                self.docker.start_exec(&exec.id, None).await?
            {
                // Output is discarded; the stream ends when the command does.
                while output.try_next().await?.is_some() {}
            }
            self.docker.inspect_exec(&exec.id).await
        };
        match tokio::time::timeout(timeout, run).await {
            Err(_) => Ok(false),
            Ok(Ok(inspect)) => Ok(inspect.exit_code == Some(0)),
            Ok(Err(e)) => Err(failed(&format!("exec in {runtime_id}"), &e)),
        }
    }
}

/// `knit-<slot>-<random>`, with characters Docker refuses in names replaced.
fn container_name(slot: &SlotId) -> String {
    let slot: String = slot
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("knit-{slot}-{:08x}", rand::random::<u32>())
}

/// Where the host's cgroup tree is mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A container's CPU time so far, in nanoseconds, read from its cgroup under `root`: the
/// same counter the engine's stats report, without a call that costs the engine a stats
/// collection per container every few seconds. `None` where this host's tree does not
/// show it (another layout, or knit in a container of its own): the caller asks the engine.
fn cgroup_cpu_ns(root: &Path, id: &str) -> Option<u64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // cgroup v1, with the cgroupfs or the systemd driver: nanoseconds.
    for dir in ["cpuacct", "cpu,cpuacct"] {
        for group in [
            format!("docker/{id}"),
            format!("system.slice/docker-{id}.scope"),
        ] {
            let path = root.join(dir).join(group).join("cpuacct.usage");
            if let Some(ns) = std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                return Some(ns);
            }
        }
    }
    // cgroup v2: `usage_usec` in cpu.stat.
    for group in [
        format!("docker/{id}"),
        format!("system.slice/docker-{id}.scope"),
    ] {
        let Ok(text) = std::fs::read_to_string(root.join(group).join("cpu.stat")) else {
            continue;
        };
        let usec = text
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<u64>().ok())?;
        return Some(usec.saturating_mul(1_000));
    }
    None
}

/// What Docker is asked to create for `launch`.
/// Bounded logs, whatever the engine's default driver: json-file (which `knit service
/// logs` reads) with [`super::LOG_FILES_MAX`] files of [`super::LOG_FILE_MAX_BYTES`].
fn log_config() -> HostConfigLogConfig {
    let config = [
        ("max-size", format!("{}k", super::LOG_FILE_MAX_BYTES / 1024)),
        ("max-file", super::LOG_FILES_MAX.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    HostConfigLogConfig {
        typ: Some("json-file".to_owned()),
        config: Some(config),
    }
}

fn container_body(launch: &Launch, image: &str, publish_ip: IpAddr) -> ContainerCreateBody {
    let spec = &launch.spec;
    let mut tags: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    tags.insert(labels::SERVICE.into(), spec.name.clone());
    tags.insert(labels::SLOT.into(), launch.slot.to_string());
    tags.insert(labels::SPEC_VERSION.into(), spec.version.to_string());
    tags.insert(
        labels::TEMPLATE.into(),
        format!("{:016x}", spec.template_id()),
    );
    tags.insert(labels::NODE.into(), launch.node.clone());
    let mut env = spec.env.clone();
    if let Some(port) = spec.ports.first() {
        env.entry("PORT".into())
            .or_insert_with(|| port.target.to_string());
    }
    env.insert("SERVICE_NAME".into(), spec.name.clone());
    env.insert("TASK_SLOT".into(), launch.slot.to_string());
    let cmd: Vec<String> = spec.command.iter().chain(&spec.args).cloned().collect();
    let mut port_bindings = PortMap::new();
    for port in &spec.ports {
        let binding = PortBinding {
            host_ip: Some(publish_ip.to_string()),
            host_port: Some(String::new()),
        };
        port_bindings.insert(
            format!("{}/{}", port.target, port.protocol),
            Some(vec![binding]),
        );
    }
    let limit = |v: u64| (v > 0).then(|| i64::try_from(v).unwrap_or(i64::MAX));
    let host_config = HostConfig {
        port_bindings: Some(port_bindings.clone()),
        memory: limit(spec.limits.memory_bytes),
        nano_cpus: limit(spec.limits.cpu_millis.saturating_mul(1_000_000)),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        log_config: Some(log_config()),
        mounts: (!spec.mounts.is_empty() || launch.secrets.is_some() || launch.configs.is_some())
            .then(|| mounts(spec, launch.secrets.as_deref(), launch.configs.as_deref())),
        // Service names resolve through this peer's DNS server, a stack's own first.
        dns: launch.directory.dns.map(|dns| vec![dns.to_string()]),
        dns_search: launch
            .directory
            .dns
            .and_then(|_| crate::discovery::directory::search_domain(spec))
            .map(|domain| vec![domain]),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: (!cmd.is_empty()).then_some(cmd),
        entrypoint: (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone()),
        env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(tags),
        exposed_ports: Some(port_bindings.into_keys().collect()),
        host_config: Some(host_config),
        stop_signal: spec.stop_signal.clone(),
        // Docker's way of switching off the image's HEALTHCHECK.
        healthcheck: spec.no_healthcheck.then(|| HealthConfig {
            test: Some(vec!["NONE".to_owned()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The spec's mounts as Docker's, the folder of its secrets' files read-only at
/// `/run/secrets`, and each of its configs' files read-only at its target. A named volume
/// the engine creates for it is labelled with the service, so that
/// `docker volume ls --filter label=knit.service=NAME` finds it.
fn mounts(
    spec: &ServiceSpec,
    secrets: Option<&std::path::Path>,
    configs: Option<&std::path::Path>,
) -> Vec<DockerMount> {
    let read_only = |source: &std::path::Path, target: &str| DockerMount {
        target: Some(target.to_owned()),
        source: Some(source.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        ..Default::default()
    };
    let secrets = secrets.map(|dir| read_only(dir, "/run/secrets"));
    let configs = configs.into_iter().flat_map(|dir| {
        spec.configs
            .iter()
            .map(move |c| read_only(&dir.join(c.relative_target()), &c.target))
    });
    spec.mounts
        .iter()
        .map(|m| {
            let (typ, volume_options) = match m.kind {
                MountKind::Bind => (MountType::BIND, None),
                MountKind::Tmpfs => (MountType::TMPFS, None),
                MountKind::Volume => (
                    MountType::VOLUME,
                    Some(MountVolumeOptions {
                        labels: Some(HashMap::from([(
                            labels::SERVICE.to_owned(),
                            spec.name.clone(),
                        )])),
                        ..Default::default()
                    }),
                ),
            };
            DockerMount {
                target: Some(m.target.clone()),
                source: (!m.source.is_empty()).then(|| m.source.clone()),
                typ: Some(typ),
                read_only: Some(m.readonly),
                volume_options,
                ..Default::default()
            }
        })
        .chain(secrets)
        .chain(configs)
        .collect()
}

/// The slot a container fills, from its service and slot labels.
fn slot_from(tags: &HashMap<String, String>) -> Result<SlotId, String> {
    let label = |key: &str| tags.get(key).ok_or_else(|| format!("no {key} label"));
    let service = label(labels::SERVICE)?;
    let slot = label(labels::SLOT)?;
    let key = slot
        .strip_prefix(service.as_str())
        .and_then(|rest| rest.strip_prefix('.'))
        .filter(|key| !key.is_empty())
        .ok_or_else(|| format!("slot {slot:?} is not of service {service:?}"))?;
    // A replicated slot is a number; anything else is the node of a global slot.
    match key.parse::<u32>() {
        Ok(index) => Ok(SlotId::replica(service, index)),
        Err(_) => NodeId::new(key)
            .map(|node| SlotId::global(service, node))
            .map_err(|e| e.to_string()),
    }
}

/// A container as the replica it runs.
fn replica_from(inspect: &ContainerInspectResponse) -> Result<Replica, String> {
    let id = inspect.id.clone().ok_or("no container id")?;
    let no_labels = HashMap::new();
    let tags = inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .unwrap_or(&no_labels);
    let slot = slot_from(tags)?;
    let version = tags
        .get(labels::SPEC_VERSION)
        .ok_or("no spec version label")?;
    let spec_version = version
        .parse()
        .map_err(|_| format!("spec version {version:?} is not a number"))?;
    // A container without the label (or with a garbled one) counts as outdated: replaced.
    let template = tags
        .get(labels::TEMPLATE)
        .and_then(|t| u64::from_str_radix(t, 16).ok())
        .unwrap_or(0);
    let default_state = ContainerState::default();
    let state = inspect.state.as_ref().unwrap_or(&default_state);
    let (replica_state, exit_code, error) = state_of(state);
    let ports = inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref());
    Ok(Replica {
        runtime_id: id,
        slot,
        spec_version,
        template,
        state: replica_state,
        exit_code,
        host_ports: ports.map(host_ports).unwrap_or_default(),
        started_at_ms: state
            .started_at
            .as_deref()
            .and_then(rfc3339_ms)
            .unwrap_or(0),
        driver_health: health_of(state),
        error,
    })
}

/// The replica state, exit code (once stopped) and failure of a container state.
fn state_of(state: &ContainerState) -> (ReplicaState, Option<i64>, Option<String>) {
    use ContainerStateStatusEnum as S;
    let code = state.exit_code.unwrap_or(0);
    let docker_error = state.error.clone().filter(|e| !e.is_empty());
    match state.status {
        Some(S::RUNNING | S::PAUSED) => (ReplicaState::Running, None, None),
        // A container whose start failed stays "created", with the reason in its error.
        Some(S::CREATED) if docker_error.is_some() => {
            (ReplicaState::Failed, Some(code), docker_error)
        }
        Some(S::CREATED | S::RESTARTING) | None | Some(S::EMPTY) => {
            (ReplicaState::Starting, None, None)
        }
        Some(S::EXITED | S::REMOVING | S::STOPPING) if state.oom_killed == Some(true) => (
            ReplicaState::Failed,
            Some(code),
            Some(format!("out of memory (OOM killed), exit code {code}")),
        ),
        Some(S::EXITED | S::REMOVING | S::STOPPING) if code == 0 => {
            (ReplicaState::Exited, Some(0), None)
        }
        Some(S::EXITED | S::REMOVING | S::STOPPING) => (
            ReplicaState::Failed,
            Some(code),
            Some(docker_error.unwrap_or_else(|| format!("exit code {code}"))),
        ),
        Some(S::DEAD) => (
            ReplicaState::Failed,
            Some(code),
            Some(format!(
                "container is dead: {}",
                docker_error.unwrap_or_default()
            )),
        ),
    }
}

/// Docker's HEALTHCHECK status; `None` for an image without one.
fn health_of(state: &ContainerState) -> Option<Health> {
    match state.health.as_ref()?.status? {
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
    }
}

/// Target port -> host port, from `"8080/tcp": [{HostIp, HostPort}]`.
fn host_ports(ports: &PortMap) -> BTreeMap<u16, u16> {
    let mut out = BTreeMap::new();
    for (key, bindings) in ports {
        let target = key.split('/').next().and_then(|p| p.parse().ok());
        let host = bindings
            .iter()
            .flatten()
            .find_map(|b| b.host_port.as_deref()?.parse().ok());
        if let (Some(target), Some(host)) = (target, host) {
            out.entry(target).or_insert(host);
        }
    }
    out
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as Docker writes it
/// (`2024-05-07T21:09:36.123456789Z`); `None` before the epoch (Docker's zero time) or
/// when it does not parse.
pub(crate) fn rfc3339_ms(text: &str) -> Option<u64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|s| s.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|s| s.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let ms: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 24 + hh) * 60 + mm) * 60 + ss;
    u64::try_from(total * 1000 + ms).ok()
}

mod image;
mod logs;
pub(crate) mod prepared;
mod watch;

#[cfg(test)]
use image::image_reference;

#[cfg(test)]
mod tests;
