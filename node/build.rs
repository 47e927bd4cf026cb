//! Records what the `knit` binary is built from, for `knit version`: the git revision
//! (`git rev-parse --short HEAD`, or `$KNIT_GIT_REVISION` for a build outside a checkout,
//! else "unknown"), the compiler's version and the target.
//!
//! It runs again only when the checked-out commit changes (git's `HEAD` and the branch it
//! names), not on every build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KNIT_GIT_REVISION");
    let revision = std::env::var("KNIT_GIT_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=KNIT_GIT_REVISION={}", revision.trim());

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let compiler = output(Command::new(rustc).arg("--version"))
        .map(|v| v.trim_start_matches("rustc ").to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=KNIT_RUSTC_VERSION={compiler}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=KNIT_TARGET={target}");
}

/// The short hash of the checked-out commit, watching the files that change with it.
fn git_revision() -> Option<String> {
    let here = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let git = |args: &[&str]| output(Command::new("git").current_dir(&here).args(args));
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.extend(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched {
        // Relative to the folder git ran in; only files that exist, or cargo would run
        // this script on every build.
        let path = here.join(path);
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    git(&["rev-parse", "--short", "HEAD"])
}

/// The trimmed standard output of a command that succeeded.
fn output(command: &mut Command) -> Option<String> {
    let out = command.output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}
