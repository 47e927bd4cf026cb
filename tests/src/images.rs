//! Container images for tests, built on this host: Docker here has no registry, so nothing
//! can be pulled.
//!
//! [`busybox_image`] builds `knit-test/busybox:1` once per process from Debian's static
//! busybox (`apt-get install busybox-static`): `FROM scratch`, busybox with its applets
//! linked in `/bin`, an `httpd` serving `/www` on port 8080 as the default command, and a
//! `HEALTHCHECK` that fetches `/` every second. Tests skip (with a message on stderr) when
//! Docker or the static busybox is missing, unless `KNIT_REQUIRE_DOCKER=1`: then they fail.
//!
//! This file uses only `std` and `anyhow`: the `knit` crate's in-crate Docker driver tests
//! include it by path, so that there is one builder of the test image.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The test image's reference.
pub const BUSYBOX_IMAGE: &str = "knit-test/busybox:1";

/// The port the test image's `httpd` listens on.
pub const BUSYBOX_HTTP_PORT: u16 = 8080;

/// The limit on `docker build` of the test image.
const BUILD_TIMEOUT: Duration = Duration::from_secs(180);
/// The limit on the quick `docker` commands (version, image inspect).
const DOCKER_CALL_TIMEOUT: Duration = Duration::from_secs(20);

const DOCKERFILE: &str = r#"FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
CMD ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]
HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD ["/bin/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
"#;

/// What building the image came to, kept for the whole process.
#[derive(Clone)]
enum Outcome {
    Ready(String),
    Skip(String),
    Fail(String),
}

/// The test image `knit-test/busybox:1`, built if missing; `Ok(None)` (after printing why)
/// when this host cannot build it and `KNIT_REQUIRE_DOCKER` is not `1`.
pub fn busybox_image() -> Result<Option<String>> {
    static OUTCOME: OnceLock<Outcome> = OnceLock::new();
    match OUTCOME.get_or_init(build_busybox_once) {
        Outcome::Ready(image) => Ok(Some(image.clone())),
        Outcome::Skip(why) => {
            eprintln!("skipping: {why} (set KNIT_REQUIRE_DOCKER=1 to fail instead)");
            Ok(None)
        }
        Outcome::Fail(why) => bail!("{why}"),
    }
}

/// Whether tests must fail, instead of skipping, when Docker is missing.
pub fn docker_required() -> bool {
    std::env::var("KNIT_REQUIRE_DOCKER").is_ok_and(|v| v == "1")
}

fn build_busybox_once() -> Outcome {
    let missing = |why: String| {
        if docker_required() {
            Outcome::Fail(format!("{why}, and KNIT_REQUIRE_DOCKER=1"))
        } else {
            Outcome::Skip(why)
        }
    };
    match docker(
        &["version", "--format", "{{.Server.Version}}"],
        DOCKER_CALL_TIMEOUT,
    ) {
        Ok(out) if out.status.success() => {}
        Ok(out) => return missing(format!("no Docker engine: {}", stderr_of(&out))),
        Err(e) => return missing(format!("no Docker engine: {e:#}")),
    }
    if docker(
        &["image", "inspect", "--format", "{{.Id}}", BUSYBOX_IMAGE],
        DOCKER_CALL_TIMEOUT,
    )
    .is_ok_and(|out| out.status.success())
    {
        return Outcome::Ready(BUSYBOX_IMAGE.to_owned());
    }
    let Some(busybox) = static_busybox() else {
        return missing(
            "no static busybox to build the test image from: apt-get install busybox-static"
                .to_owned(),
        );
    };
    match build(&busybox) {
        Ok(()) => Outcome::Ready(BUSYBOX_IMAGE.to_owned()),
        Err(e) => Outcome::Fail(format!("cannot build {BUSYBOX_IMAGE}: {e:#}")),
    }
}

/// Builds the image from a temporary context holding the Dockerfile, busybox and `/www`.
fn build(busybox: &Path) -> Result<()> {
    let context = std::env::temp_dir().join(format!("knit-test-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&context);
    std::fs::create_dir_all(context.join("www"))?;
    let result = (|| {
        std::fs::write(context.join("Dockerfile"), DOCKERFILE)?;
        std::fs::copy(busybox, context.join("busybox")).context("cannot copy busybox")?;
        std::fs::write(
            context.join("www").join("index.html"),
            "<h1>knit test image</h1>\n",
        )?;
        let dir = context.to_str().context("temp dir is not UTF-8")?;
        let out = docker(&["build", "-q", "-t", BUSYBOX_IMAGE, dir], BUILD_TIMEOUT)?;
        if !out.status.success() {
            bail!("docker build failed: {}", stderr_of(&out));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&context);
    result
}

/// The first statically linked busybox among the usual places and `$PATH`.
fn static_busybox() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = [
        PathBuf::from("/bin/busybox"),
        PathBuf::from("/usr/bin/busybox"),
    ]
    .into_iter()
    .chain(std::env::split_paths(&path).map(|dir| dir.join("busybox")));
    candidates
        .into_iter()
        .find(|p| std::fs::read(p).is_ok_and(|elf| is_static_elf(&elf)))
}

/// Whether `elf` is a 64-bit little-endian ELF executable without a program interpreter
/// (`PT_INTERP`), that is, one that needs no dynamic loader and so runs `FROM scratch`.
fn is_static_elf(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // Magic, ELFCLASS64, ELFDATA2LSB.
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(entsize), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(count))
        .all(|i| u32_at(phoff + i * usize::from(entsize)).is_some_and(|kind| kind != PT_INTERP))
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// Runs `docker ARGS`, killing it past `limit`.
fn docker(args: &[&str], limit: Duration) -> Result<Output> {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run the docker CLI")?;
    let started = Instant::now();
    while child.try_wait()?.is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("docker {} took longer than {limit:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child.wait_with_output()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_binaries_and_scripts_are_not_static() {
        let ls = std::fs::read("/bin/ls").unwrap_or_default();
        if !ls.is_empty() {
            assert!(!is_static_elf(&ls), "/bin/ls is dynamically linked");
        }
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(b""));
    }
}
