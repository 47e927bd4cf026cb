//! `knit version` and `knit --version`: what this binary is, as `build.rs` recorded it when
//! it was built (the version, the git revision, the compiler and the target). It asks no
//! peer anything; `knit node ls --format '{{.Name}} {{.Version}}'` gives the peers'.

use anyhow::Result;
use serde::Serialize;

use crate::cli::Format;
use crate::client::output::{self, Record};
use crate::client::template::{Field, Row};

/// The crate's version.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
/// What `knit --version` prints after the name: `0.1.0 (c78431e)`.
pub(crate) const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KNIT_GIT_REVISION"),
    ")"
);

/// What `knit version` shows.
#[derive(Debug, Clone, Serialize)]
struct Version {
    version: &'static str,
    /// The git commit built (short hash), or "unknown" when built outside a checkout.
    revision: &'static str,
    /// `rustc --version`, without the leading `rustc`.
    rustc: &'static str,
    target: &'static str,
}

const THIS: Version = Version {
    version: VERSION,
    revision: env!("KNIT_GIT_REVISION"),
    rustc: env!("KNIT_RUSTC_VERSION"),
    target: env!("KNIT_TARGET"),
};

impl Row for Version {
    const COMMAND: &'static str = "version";
    const FIELDS: &'static [Field] = &[
        Field::new("Version", "VERSION"),
        Field::new("Revision", "REVISION"),
        Field::new("Rustc", "RUSTC"),
        Field::new("Target", "TARGET"),
    ];

    fn field(&self, name: &str) -> String {
        match name {
            "Version" => self.version,
            "Revision" => self.revision,
            "Rustc" => self.rustc,
            "Target" => self.target,
            _ => "",
        }
        .to_owned()
    }

    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

impl Record for Version {
    const TABLE: &'static str = r"table {{.Version}}\t{{.Revision}}\t{{.Rustc}}\t{{.Target}}";
}

/// Prints the version as `format` asks (default: one `Key: value` line each).
pub(crate) fn run(format: Option<&Format>) -> Result<()> {
    match format {
        None | Some(Format::Table) => {
            let mut text = String::new();
            for field in Version::FIELDS {
                let label = format!("{}:", field.name);
                text.push_str(&format!("{label:<10} {}\n", THIS.field(field.name)));
            }
            output::write_stdout(&text)
        }
        Some(format) => output::print(&[THIS], format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_templates_show_the_build() {
        let json = output::render(&[THIS], &Format::Json).unwrap();
        let value: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(value["version"], VERSION);
        assert!(!value["revision"].as_str().unwrap().is_empty());
        assert!(
            value["rustc"]
                .as_str()
                .unwrap()
                .starts_with(char::is_numeric)
        );
        let format: Format = "{{.Version}} {{.Revision}}".parse().unwrap();
        assert_eq!(
            output::render(&[THIS], &format).unwrap(),
            format!("{VERSION} {}\n", THIS.revision)
        );
        assert!(LONG.starts_with(VERSION) && LONG.contains(THIS.revision));
    }
}
