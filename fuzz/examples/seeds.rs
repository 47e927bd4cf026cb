//! Writes the seed inputs in `fuzz/seeds/<target>/` from real encodings: packets of a
//! small cluster, rumors, anti-entropy frames, signed deltas under the fixture CA, join
//! messages, tokens, a state file, spec texts and JSON bodies.
//!
//! `cargo +nightly run --manifest-path fuzz/Cargo.toml --example seeds`; the files are
//! small and checked in, so the fuzzers start from shapes they would take long to find.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use knit_fuzz::{HashSigner, NOW_MS, cluster, join_messages, node, peer};
use knit_mesh::codec::{encode, encode_large};
use knit_mesh::quic::{join_secret, keys::NodeSigner, tls};
use knit_mesh::rumor::Rumor;
use knit_mesh::store::{Delta, Digest, Freshness, Stamp, Store, owned_key, revoked_key};
use knit_mesh::trust::{Signer, cert_key};
use knit_mesh::{Membership, Output, PeerId, Profile, Timer};
use knit_scheduler::spec::{HealthCheck, Mode, PortSpec, Probe, Protocol};
use knit_scheduler::{ReplicaReport, ServiceSpec};
use serde::Serialize;

fn dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    std::fs::create_dir_all(&dir).expect("seeds dir");
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(dir(target).join(name), bytes).expect("seed written");
}

/// Three cores on a virtual network; returns every packet each node received, in order.
fn gossip() -> BTreeMap<PeerId, Vec<Vec<u8>>> {
    enum Event {
        Packet(PeerId, Vec<u8>),
        Timer(PeerId, Timer),
    }
    let mut cores: BTreeMap<PeerId, Membership> = (1..=3)
        .map(|i| {
            (
                peer(i),
                Membership::new(peer(i), Profile::Lan, u64::from(i), NOW_MS),
            )
        })
        .collect();
    let mut queue: Vec<(u64, u64, Event)> = Vec::new();
    let mut seq = 0;
    let mut received: BTreeMap<PeerId, Vec<Vec<u8>>> = BTreeMap::new();
    let mut now_ms = NOW_MS;
    let drain = |me: PeerId,
                 core: &mut Membership,
                 now_ms: u64,
                 queue: &mut Vec<(u64, u64, Event)>,
                 seq: &mut u64| {
        while let Some(output) = core.poll_output() {
            *seq += 1;
            match output {
                Output::Send { to, packet } => {
                    queue.push((now_ms + 1, *seq, Event::Packet(to, packet.to_vec())));
                }
                Output::Timer { after, timer } => {
                    let at = now_ms + u64::try_from(after.as_millis()).unwrap_or(u64::MAX / 2);
                    queue.push((at, *seq, Event::Timer(me, timer)));
                }
                _ => {}
            }
        }
    };
    for i in 2..=3 {
        let core = cores.get_mut(&peer(i)).unwrap();
        core.announce(peer(1), now_ms).unwrap();
        drain(peer(i), core, now_ms, &mut queue, &mut seq);
    }
    let delta = Store::new(node(3)).put(
        &owned_key(&node(3), "info"),
        Some(br#"{"name":"host-3"}"#.to_vec()),
        NOW_MS,
        &HashSigner,
    );
    let end_ms = NOW_MS + 8_000;
    while let Some(next) = (0..queue.len()).min_by_key(|&i| (queue[i].0, queue[i].1)) {
        let (at, _, event) = queue.swap_remove(next);
        if at > end_ms {
            break;
        }
        now_ms = at;
        let me = match event {
            Event::Packet(to, bytes) => {
                let core = cores.get_mut(&to).unwrap();
                let _ = core.handle_packet(&bytes, now_ms);
                received.entry(to).or_default().push(bytes);
                to
            }
            Event::Timer(me, timer) => {
                let _ = cores.get_mut(&me).unwrap().handle_timer(timer, now_ms);
                me
            }
        };
        let core = cores.get_mut(&me).unwrap();
        if me == peer(3) && now_ms > NOW_MS + 3_000 && now_ms < NOW_MS + 3_500 {
            core.spread(&delta, now_ms);
        }
        if me == peer(3)
            && now_ms > NOW_MS + 6_000
            && core.connection() != knit_mesh::Connection::Defunct
        {
            let _ = core.leave(now_ms);
        }
        let _ = core.sync(now_ms);
        drain(me, core, now_ms, &mut queue, &mut seq);
    }
    received
}

fn membership_and_packets() {
    let received = gossip();
    let at_two = &received[&peer(2)];
    for (i, chunk) in at_two.chunks(12).take(4).enumerate() {
        write(
            "membership",
            &format!("at-node-2-{i}"),
            &join_messages(chunk),
        );
    }
    let everything: Vec<&Vec<u8>> = received.values().flatten().collect();
    let step = (everything.len() / 12).max(1);
    for (i, packet) in everything.iter().step_by(step).take(12).enumerate() {
        write("packet", &format!("packet-{i}"), packet);
    }
}

/// Signers for nodes 2 and 3 under the fixture CA, and their certificate records.
fn signed_writers() -> Vec<(u8, NodeSigner, Vec<u8>)> {
    let creds = cluster();
    [2u8, 3]
        .into_iter()
        .map(|b| {
            let (key_pem, public) = tls::generate_node_key().unwrap();
            let cert =
                tls::issue_node_cert(&creds.cluster_id, &creds.ca_key_pem, &node(b), &public)
                    .unwrap();
            (b, NodeSigner::new(&key_pem).unwrap(), cert)
        })
        .collect()
}

fn deltas() -> Vec<Delta> {
    let mut out = Vec::new();
    for (b, signer, cert) in signed_writers() {
        let mut store = Store::new(node(b));
        let at = NOW_MS - 10_000;
        out.push(store.put(&cert_key(&node(b)), Some(cert), at, &signer));
        out.push(store.put(
            &owned_key(&node(b), "info"),
            Some(b"{}".to_vec()),
            at + 1,
            &signer,
        ));
        out.push(store.put(
            &format!("svc/web{b}"),
            Some(b"{}".to_vec()),
            at + 2,
            &signer,
        ));
        out.push(store.put("svc/old", None, at + 3, &signer));
        if b == 3 {
            out.push(store.put(
                &revoked_key(&node(2)),
                Some(b"removed".to_vec()),
                at + 4,
                &signer,
            ));
        }
    }
    out
}

fn gate_sync_rumor() {
    let deltas = deltas();
    let (certs, writes): (Vec<Delta>, Vec<Delta>) = deltas
        .iter()
        .cloned()
        .partition(|d| d.key.ends_with(".cert"));
    let batch = |d: &[Delta]| encode_large(&d.to_vec()).unwrap();
    write(
        "gate",
        "certs-then-writes",
        &join_messages(&[batch(&certs), batch(&writes)]),
    );
    write(
        "gate",
        "writes-then-certs",
        &join_messages(&[batch(&writes), batch(&certs)]),
    );
    write("gate", "one-batch", &join_messages(&[batch(&deltas)]));
    let rumor_sized = encode(&writes[0]).unwrap();
    write(
        "gate",
        "rumor-sized",
        &join_messages(&[batch(&certs[..1]), rumor_sized]),
    );

    let mut store = Store::new(node(1));
    for d in &deltas {
        store.merge(d.clone(), NOW_MS, 60_000).unwrap();
    }
    let summary = store.summary();
    let buckets: BTreeSet<u32> = [0, 5, 63].into();
    let digest: Digest = store.digest(None);
    let fresh = Freshness {
        horizon_ms: NOW_MS - 2 * 86_400_000,
        synced_ms: NOW_MS - 60_000,
    };
    write("sync", "push", &encode_large(&(0u32, &writes)).unwrap());
    write(
        "sync",
        "summary",
        &encode_large(&(1u32, &summary, fresh)).unwrap(),
    );
    write(
        "sync",
        "differ",
        &encode_large(&(2u32, &buckets, fresh)).unwrap(),
    );
    write("sync", "digest", &encode_large(&(3u32, &digest)).unwrap());
    write("sync", "deltas", &encode_large(&(4u32, &certs)).unwrap());
    write("sync", "end", &encode_large(&5u32).unwrap());
    write(
        "sync",
        "bare-summary",
        &encode_large(&(&summary, fresh)).unwrap(),
    );
    let exchange = encode_large(&(&buckets, &digest, fresh)).unwrap();
    write("sync", "bare-buckets-digest", &exchange);

    let leave = encode(&Rumor::Leave(peer(3))).unwrap();
    let delta = encode(&Rumor::Delta(writes[1].clone())).unwrap();
    let future = Delta {
        stamp: Stamp {
            clock: (NOW_MS + 3_600_000) << 16,
            writer: node(2),
        },
        ..writes[1].clone()
    };
    let future = encode(&Rumor::Delta(future)).unwrap();
    write(
        "rumor",
        "leave-and-delta",
        &join_messages(&[&leave, &delta, &leave]),
    );
    write("rumor", "future", &join_messages(&[future, delta]));
}

fn join_token_state() {
    let creds = cluster();
    #[derive(Serialize)]
    enum Request {
        Hello,
        Join {
            public_key: Vec<u8>,
            proof: [u8; 32],
        },
    }
    let (_, public) = tls::generate_node_key().unwrap();
    write("join", "hello", &encode_large(&Request::Hello).unwrap());
    let join = Request::Join {
        public_key: public,
        proof: [7; 32],
    };
    write("join", "join", &encode_large(&join).unwrap());
    write(
        "join",
        "refused",
        &encode_large(&(2u32, "wrong join token")).unwrap(),
    );
    write(
        "join",
        "hello-answer",
        &encode_large(&(0u32, peer(1))).unwrap(),
    );
    let admitted = (
        1u32,
        node(4),
        &creds.cluster_id,
        &creds.ca_der,
        "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        &creds.node_cert_der,
        [9u8; 16],
        peer(1),
    );
    write("join", "admitted", &encode_large(&admitted).unwrap());
    write(
        "join",
        "sealed-secret",
        &join_secret::seal(creds, &[3; 16]).unwrap(),
    );
    write("join", "client-name", b"alice-2");

    write("token", "token", creds.token().to_string().as_bytes());
    write("token", "node-id", node(0xab).to_string().as_bytes());
    write(
        "token",
        "owned-key",
        owned_key(&node(0xab), "info").as_bytes(),
    );
    write("token", "cert-key", cert_key(&node(0xab)).as_bytes());

    let mut store = Store::new(node(1));
    for d in deltas() {
        store.merge(d, NOW_MS, 60_000).unwrap();
    }
    store.put("svc/mine", Some(b"{}".to_vec()), NOW_MS, &HashSigner);
    write("state_file", "signed", &store.encode().unwrap());
    #[derive(Serialize)]
    struct LegacyEntry {
        stamp: Stamp,
        value: Option<Vec<u8>>,
    }
    #[derive(Serialize)]
    struct LegacyFile {
        me: knit_mesh::NodeId,
        entries: BTreeMap<String, LegacyEntry>,
        clock: u64,
    }
    let stamp = |b| Stamp {
        clock: NOW_MS << 16,
        writer: node(b),
    };
    let legacy = LegacyFile {
        me: node(1),
        entries: BTreeMap::from([
            (
                "svc/web".to_owned(),
                LegacyEntry {
                    stamp: stamp(2),
                    value: Some(vec![1]),
                },
            ),
            (
                owned_key(&node(1), "info"),
                LegacyEntry {
                    stamp: stamp(1),
                    value: Some(vec![2]),
                },
            ),
            (
                owned_key(&node(2), "info"),
                LegacyEntry {
                    stamp: stamp(2),
                    value: None,
                },
            ),
        ]),
        clock: NOW_MS << 16,
    };
    write("state_file", "legacy", &encode_large(&legacy).unwrap());
    #[derive(Serialize)]
    struct Entry2 {
        stamp: Stamp,
        value: Option<Vec<u8>>,
        sig: Vec<u8>,
    }
    let format_2 = (
        node(1),
        BTreeMap::from([(
            "svc/web".to_owned(),
            Entry2 {
                stamp: stamp(2),
                value: Some(vec![1]),
                sig: vec![5; 64],
            },
        )]),
        NOW_MS << 16,
    );
    let body = encode_large(&format_2).unwrap();
    write(
        "state_file",
        "format-2",
        &[&b"KNITST\x00\x02"[..], &body].concat(),
    );
}

fn specs() {
    for (i, text) in [
        "80:8080",
        "53:53/udp",
        "node.labels.zone==eu-1",
        "node.hostname != web-2",
        "node.id==0a0b",
        "1h2m3.5s",
        "250ms",
        "512MiB",
        "1.5G",
        "0.25",
        "250m",
        "SIGTERM",
        "kill",
        "40",
    ]
    .iter()
    .enumerate()
    {
        write("spec_text", &format!("text-{i}"), text.as_bytes());
    }
    let mut spec = ServiceSpec::docker("blog", "blog:v2");
    spec.mode = Mode::Replicated { replicas: 3 };
    spec.ports = vec![PortSpec {
        published: 80,
        target: 4000,
        protocol: Protocol::Tcp,
        proxy_protocol: true,
    }];
    spec.env.insert("MODE".into(), "prod".into());
    spec.labels.insert("team".into(), "web".into());
    spec.constraints = vec!["node.labels.zone==a".parse().unwrap()];
    spec.reservations.cpu_millis = 250;
    spec.limits.memory_bytes = 512 << 20;
    spec.stop_signal = Some("SIGQUIT".into());
    spec.health = Some(HealthCheck::new(Probe::Http {
        path: "/healthz".into(),
        port: Some(4000),
    }));
    let mut process = ServiceSpec::docker("worker", "unused");
    process.driver = knit_scheduler::spec::Driver::Process;
    process.command = vec!["/bin/sleep".into(), "60".into()];
    process.mode = Mode::Global;
    process.previous = Some(Box::new(ServiceSpec::docker("worker", "old:1")));
    for (name, spec) in [("blog", &spec), ("worker", &process)] {
        write(
            "service_spec",
            name,
            &serde_json::to_vec_pretty(spec).unwrap(),
        );
    }
    write(
        "service_spec",
        "minimal",
        br#"{"name":"web","image":"nginx:1.27"}"#,
    );
    let report = ReplicaReport {
        slot: knit_scheduler::SlotId::replica("blog", 2),
        spec_version: 4,
        state: knit_scheduler::ReplicaState::Running,
        health: knit_scheduler::Health::Healthy,
        host_ports: BTreeMap::from([(4000, 31_000)]),
        error: None,
        runtime_id: "knit-blog.2-4".into(),
        started_at_ms: NOW_MS,
        restarts: 1,
        cpu_millis: Some(120),
    };
    write(
        "service_spec",
        "report",
        &serde_json::to_vec(&report).unwrap(),
    );
}

fn main() {
    membership_and_packets();
    gate_sync_rumor();
    join_token_state();
    specs();
    // A signer that is not the hash one still signs 64 bytes.
    assert_eq!(HashSigner.sign(b"x").len(), 64);
    println!(
        "seeds written to {}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("seeds")
            .display()
    );
}
