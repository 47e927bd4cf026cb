//! Compose snippets as people write them, read into specs, warnings and errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use knit_scheduler::spec::{
    FailureAction, Mode, MountKind, Probe, Protocol, RestartCondition, UpdateOrder,
};

use super::*;

/// Files in memory, by path.
struct Memory(BTreeMap<PathBuf, Vec<u8>>);

impl Files for Memory {
    fn read(&self, path: &Path) -> Result<Vec<u8>, ComposeError> {
        self.0.get(path).cloned().ok_or_else(|| ComposeError::Read {
            path: path.display().to_string(),
            why: "no such file".to_owned(),
        })
    }
}

fn files() -> Memory {
    Memory(BTreeMap::from([
        (PathBuf::from("/srv/app/db_pass.txt"), b"hunter2".to_vec()),
        (PathBuf::from("/srv/app/nginx.conf"), b"server {}".to_vec()),
        (
            PathBuf::from("/srv/app/web.env"),
            b"FROM_FILE=1\nOVERRIDDEN=file\n".to_vec(),
        ),
    ]))
}

fn vars() -> Variables {
    Variables {
        env: BTreeMap::from([
            ("TAG".to_owned(), "1.27".to_owned()),
            ("HOME".to_owned(), "/home/ops".to_owned()),
            ("FROM_SHELL".to_owned(), "shell".to_owned()),
        ]),
        dotenv: BTreeMap::from([("REPLICAS".to_owned(), "3".to_owned())]),
    }
}

fn load_text(text: &str) -> Result<Stack, ComposeError> {
    load_texts(&[text])
}

fn load_texts(texts: &[&str]) -> Result<Stack, ComposeError> {
    let inputs: Vec<Input> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| Input {
            path: PathBuf::from(format!("/srv/app/compose{i}.yml")),
            text: (*text).to_owned(),
        })
        .collect();
    load("app", &inputs, &vars(), &files())
}

fn service<'a>(stack: &'a Stack, name: &str) -> &'a ServiceSpec {
    stack
        .services
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

const WEB_AND_DB: &str = r#"
version: "3.8"
services:
  web:
    image: nginx:${TAG}
    command: nginx -g 'daemon off;'
    ports:
      - "80:8080"
      - target: 443
        published: 8443
        protocol: tcp
        mode: ingress
    environment:
      - PLAIN=1
      - FROM_SHELL
      - NOT_SET_ANYWHERE
    env_file: web.env
    labels:
      tier: front
    configs:
      - source: nginx_conf
        target: /etc/nginx/nginx.conf
        mode: 0440
    volumes:
      - ./site:/usr/share/nginx/html:ro
      - ~/logs:/var/log/nginx
    deploy:
      replicas: ${REPLICAS}
      labels: [traefik.enable=true]
      placement:
        constraints: [node.labels.zone==a]
      resources:
        limits: {cpus: "0.5", memory: 256M}
        reservations: {cpus: 0.25, memory: 128M}
      restart_policy:
        condition: on-failure
        delay: 10s
        max_attempts: 3
        window: 2m
      update_config:
        parallelism: 2
        delay: 10s
        failure_action: rollback
        order: start-first
        max_failure_ratio: 0.1
      rollback_config:
        parallelism: 0
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://localhost:8080/"]
      interval: 5s
      timeout: 2s
      retries: 4
      start_period: 20s
  db:
    image: redis:7
    entrypoint: ["redis-server"]
    command: ["--appendonly", "yes"]
    environment:
      OVERRIDDEN: env
      COUNT: 3
    volumes:
      - data:/data
      - type: tmpfs
        target: /tmp
    secrets:
      - db_pass
      - source: db_pass
        target: /run/secrets/password
        uid: "999"
        mode: 0400
    healthcheck:
      test: redis-cli ping
    deploy:
      mode: global
    stop_grace_period: 1m
volumes:
  data:
secrets:
  db_pass:
    file: ./db_pass.txt
configs:
  nginx_conf:
    file: nginx.conf
x-shared: &shared
  anything: goes
"#;

#[test]
fn a_two_service_stack_reads_as_swarm_would() {
    let stack = load_text(WEB_AND_DB).unwrap();
    assert_eq!(stack.warnings, Vec::<String>::new());
    let web = service(&stack, "app_web");
    assert_eq!(web.image.as_deref(), Some("nginx:1.27"));
    assert_eq!(web.command, ["nginx", "-g", "daemon off;"]);
    assert_eq!(web.mode, Mode::Replicated { replicas: 3 });
    assert_eq!((web.ports[0].published, web.ports[0].target), (80, 8080));
    assert_eq!(
        (
            web.ports[1].published,
            web.ports[1].target,
            web.ports[1].protocol
        ),
        (8443, 443, Protocol::Tcp)
    );
    assert_eq!(web.env["PLAIN"], "1");
    assert_eq!(web.env["FROM_SHELL"], "shell");
    assert_eq!(web.env["FROM_FILE"], "1");
    assert!(!web.env.contains_key("NOT_SET_ANYWHERE"));
    assert_eq!(web.labels["tier"], "front");
    assert_eq!(web.labels["traefik.enable"], "true");
    assert_eq!(web.labels[NAMESPACE_LABEL], "app");
    assert_eq!(web.configs[0].source, "app_nginx_conf");
    assert_eq!(web.configs[0].target, "/etc/nginx/nginx.conf");
    assert_eq!(web.configs[0].mode, 0o440);
    assert_eq!(web.mounts[0].kind, MountKind::Bind);
    assert_eq!(web.mounts[0].source, "/srv/app/site");
    assert!(web.mounts[0].readonly);
    assert_eq!(web.mounts[1].source, "/home/ops/logs");
    assert_eq!(web.constraints[0].to_string(), "node.labels.zone==a");
    assert_eq!(web.limits.cpu_millis, 500);
    assert_eq!(web.limits.memory_bytes, 256 << 20);
    assert_eq!(web.reservations.cpu_millis, 250);
    assert_eq!(web.restart.condition, RestartCondition::OnFailure);
    assert_eq!(web.restart.max_attempts, Some(3));
    assert_eq!(web.restart.window_ms, 120_000);
    assert_eq!(web.update.parallelism, 2);
    assert_eq!(web.update.failure_action, FailureAction::Rollback);
    assert_eq!(web.update.order, UpdateOrder::StartFirst);
    assert_eq!(web.rollback.parallelism, 0);
    let health = web.health.as_ref().unwrap();
    assert_eq!(
        health.probe,
        Probe::Command(vec![
            "wget".into(),
            "-q".into(),
            "-O-".into(),
            "http://localhost:8080/".into()
        ])
    );
    assert_eq!(
        (
            health.interval_ms,
            health.timeout_ms,
            health.retries,
            health.start_period_ms
        ),
        (5_000, 2_000, 4, 20_000)
    );

    let db = service(&stack, "app_db");
    assert_eq!(db.mode, Mode::Global);
    assert_eq!(db.entrypoint, ["redis-server"]);
    assert_eq!(db.command, ["--appendonly", "yes"]);
    assert_eq!(db.env["OVERRIDDEN"], "env");
    assert_eq!(db.env["COUNT"], "3");
    assert_eq!(
        db.mounts[0].source, "app_data",
        "named volumes are the stack's"
    );
    assert_eq!(db.mounts[1].kind, MountKind::Tmpfs);
    assert_eq!(db.secrets[0].source, "app_db_pass");
    assert_eq!(
        db.secrets[0].target, "db_pass",
        "the file keeps the short name"
    );
    assert_eq!(db.secrets[1].target, "password");
    assert_eq!((db.secrets[1].uid, db.secrets[1].mode), (999, 0o400));
    assert_eq!(
        db.health.as_ref().unwrap().probe,
        Probe::Command(vec!["/bin/sh".into(), "-c".into(), "redis-cli ping".into()])
    );
    assert_eq!(db.stop_grace_ms, 60_000);

    assert_eq!(stack.secrets.len(), 1);
    assert_eq!(stack.secrets[0].name, "app_db_pass");
    assert_eq!(stack.secrets[0].value, b"hunter2");
    assert_eq!(stack.configs[0].name, "app_nginx_conf");
    assert_eq!(stack.configs[0].value, b"server {}");
    for spec in &stack.services {
        spec.validate(&knit_scheduler::spec::Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
    }
}

#[test]
fn unknown_keys_are_warned_about_by_name() {
    let stack = load_text(
        r#"
services:
  web:
    image: nginx
    build: .
    depends_on: [db]
    networks: [front]
    restart: always
    expose: ["9000"]
    frobnicate: 1
    x-ours: fine
    deploy:
      placement:
        preferences: [{spread: node.labels.zone}]
      endpoint_mode: dnsrr
networks:
  front:
"#,
    )
    .unwrap();
    let warnings = stack.warnings.join("\n");
    for key in [
        "services.web.build",
        "services.web.depends_on",
        "services.web.networks",
        "services.web.restart",
        "services.web.frobnicate",
        "services.web.deploy.placement.preferences",
        "services.web.deploy.endpoint_mode",
        "networks",
    ] {
        assert!(
            warnings.lines().any(|w| w.starts_with(&format!("{key}:"))),
            "no warning for {key}:\n{warnings}"
        );
    }
    assert!(!warnings.contains("x-ours"), "{warnings}");
    assert_eq!(stack.warnings.len(), 8, "{warnings}");
}

/// The error of a file with `service` as its only service.
fn refused(service: &str) -> String {
    load_text(&format!("services:\n  web:\n{service}"))
        .unwrap_err()
        .to_string()
}

#[test]
fn what_cannot_be_honoured_safely_is_an_error_that_says_what_to_do() {
    let cases = [
        (
            "    image: a\n    user: \"1000\"\n",
            "services.web.user: knit cannot run",
        ),
        (
            "    image: a\n    ports: [\"127.0.0.1:80:8080\"]\n",
            "cannot bind them to 127.0.0.1",
        ),
        (
            "    image: a\n    deploy:\n      placement:\n        constraints: [node.role == manager]\n",
            "no manager or worker",
        ),
        ("    image: a\n    volumes: [data:/data]\n", "not declared"),
        (
            "    image: a\n    secrets: [pw]\n",
            "secret \"pw\" is not declared",
        ),
        ("    build: .\n", "knit does not build images"),
        (
            "    image: a\n    deploy:\n      mode: global\n      replicas: 2\n",
            "a global service runs one replica per node",
        ),
        (
            "    image: a\n    deploy:\n      resources:\n        limits:\n          pids: 10\n",
            "limits.pids: knit cannot limit",
        ),
        (
            "    image: a\n    mem_limit: 1g\n",
            "deploy.resources.limits.memory",
        ),
        (
            "    image: a\n    command: \"echo 'unclosed\"\n",
            "unclosed quote",
        ),
        (
            "    image: a\n    deploy:\n      replicas: many\n",
            "\"many\" is not a whole number",
        ),
        (
            "    image: a\n    healthcheck:\n      interval: 5s\n",
            "add `test:`",
        ),
        (
            "    image: a\n    environment: ${MISSING:?set it}\n",
            "MISSING must be set",
        ),
    ];
    for (service, want) in cases {
        let e = refused(service);
        assert!(e.contains(want), "{service}\nsaid: {e}\nwanted: {want}");
    }
    let e = load_text("services:\n  web: [\n").unwrap_err().to_string();
    assert!(e.contains("is not valid YAML") && e.contains("line"), "{e}");
    let e = load_text("services:\n  Web:\n    image: a\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("rename it in the file"), "{e}");
    let e = load("Bad", &[], &vars(), &files()).unwrap_err().to_string();
    assert!(e.contains("must be 1-40 characters"), "{e}");
}

#[test]
fn secrets_and_configs_come_from_files_variables_content_or_the_cluster() {
    let stack = load_text(
        r#"
services:
  web:
    image: nginx
    secrets: [from_file, from_env, outside]
    configs: [inline, renamed]
secrets:
  from_file: {file: ./db_pass.txt}
  from_env: {environment: FROM_SHELL}
  outside: {external: true}
configs:
  inline:
    content: |
      key=value
  renamed:
    file: nginx.conf
    name: shared_nginx
"#,
    )
    .unwrap();
    let web = service(&stack, "app_web");
    let sources: Vec<&str> = web.secrets.iter().map(|s| s.source.as_str()).collect();
    assert_eq!(sources, ["app_from_file", "app_from_env", "outside"]);
    assert_eq!(web.configs[0].target, "/inline");
    assert_eq!(web.configs[1].source, "shared_nginx");
    let made: Vec<(&str, &[u8])> = stack
        .secrets
        .iter()
        .map(|s| (s.name.as_str(), s.value.as_slice()))
        .collect();
    assert_eq!(
        made,
        [
            ("app_from_env", &b"shell"[..]),
            ("app_from_file", &b"hunter2"[..])
        ]
    );
    assert_eq!(stack.configs[0].value, b"key=value\n");
    let e = load_text("services:\n  web:\n    image: a\nsecrets:\n  s: {}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("give exactly one of file:"), "{e}");
    let e = load_text("services:\n  web:\n    image: a\nsecrets:\n  s: {file: ./nope}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("/srv/app/nope"), "{e}");
}

#[test]
fn several_files_merge_later_over_earlier() {
    let base = "services:\n  web:\n    image: nginx:1\n    environment: [A=1]\n    ports: [\"80:80\"]\n  db:\n    image: redis\n";
    let over = "services:\n  web:\n    image: nginx:2\n    environment: {B: \"2\"}\n    ports: [\"443:443\"]\n    deploy: {replicas: 2}\n";
    let stack = load_texts(&[base, over]).unwrap();
    let web = service(&stack, "app_web");
    assert_eq!(web.image.as_deref(), Some("nginx:2"));
    assert_eq!(web.env.len(), 2);
    assert_eq!(web.ports.len(), 2);
    assert_eq!(web.mode, Mode::Replicated { replicas: 2 });
    assert_eq!(stack.services.len(), 2);
}

#[test]
fn port_ranges_and_protocols() {
    let stack = load_text(
        "services:\n  dns:\n    image: a\n    ports: [\"5300-5301:53-54/udp\", 9000:9000]\n",
    )
    .unwrap();
    let ports: Vec<(u16, u16, Protocol)> = service(&stack, "app_dns")
        .ports
        .iter()
        .map(|p| (p.published, p.target, p.protocol))
        .collect();
    assert_eq!(
        ports,
        [
            (5300, 53, Protocol::Udp),
            (5301, 54, Protocol::Udp),
            (9000, 9000, Protocol::Tcp)
        ]
    );
}

#[test]
fn shell_words_split_as_sh_would() {
    use super::fields::split_words;
    assert_eq!(
        split_words(r#"sh -c "echo \"hi\" $HOME" 'a b' c\ d"#).unwrap(),
        ["sh", "-c", "echo \"hi\" $HOME", "a b", "c d"]
    );
    assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
    assert_eq!(split_words("''").unwrap(), [""]);
    assert!(split_words("'open").is_none());
}

#[test]
fn disabled_health_checks_switch_the_images_off_too() {
    let stack = load_text(
        "services:\n  a:\n    image: x\n    healthcheck: {disable: true}\n  b:\n    image: x\n    healthcheck:\n      test: [\"NONE\"]\n",
    )
    .unwrap();
    for name in ["app_a", "app_b"] {
        let spec = service(&stack, name);
        assert!(spec.health.is_none() && spec.no_healthcheck, "{name}");
    }
}

#[test]
fn max_replicas_per_node_is_docker_s_cap() {
    let stack = load_text(
        "services:\n  web:\n    image: a\n    deploy:\n      replicas: 4\n      placement:\n        max_replicas_per_node: 1\n",
    )
    .unwrap();
    assert_eq!(service(&stack, "app_web").replicas_max_per_node, 1);
    let err = load_text(
        "services:\n  web:\n    image: a\n    deploy:\n      placement:\n        max_replicas_per_node: -1\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("max_replicas_per_node"), "{err}");
}

#[test]
fn target_only_ports_and_expose_are_reached_by_name_only() {
    let stack = load_text(
        "services:\n  api:\n    image: a\n    ports: [\"8080\", {target: 9000}, \"80:8000\"]\n    expose: [\"8080\", \"7000-7001\"]\n",
    )
    .unwrap();
    let ports: Vec<(u16, u16)> = service(&stack, "app_api")
        .ports
        .iter()
        .map(|p| (p.published, p.target))
        .collect();
    assert_eq!(
        ports,
        [(0, 8080), (0, 9000), (80, 8000), (0, 7000), (0, 7001)],
        "8080 once; 0 is not published"
    );
    assert!(stack.warnings.is_empty(), "{:?}", stack.warnings);
}
