//! The benchmark programs' command lines: `--flag value` pairs, checked against the flags a
//! program knows, read with defaults and ranges. A bad flag is an error that says what is
//! wrong and shows the usage; it never panics.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use anyhow::{Result, bail};

/// A parsed command line of `--flag value` pairs.
#[derive(Debug, Clone)]
pub struct Flags {
    /// Flag (with its dashes) -> value; a flag given twice keeps the last value.
    values: BTreeMap<String, String>,
    /// Shown after an error, so that the user sees what the program accepts.
    usage: &'static str,
}

impl Flags {
    /// Parses `args` (without the program name) as `--flag value` pairs, each flag one of
    /// `known`. Returns `None` when `--help` or `-h` is asked for (the caller prints
    /// `usage` and exits).
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        known: &[&str],
        usage: &'static str,
    ) -> Result<Option<Self>> {
        let mut values = BTreeMap::new();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            if flag == "--help" || flag == "-h" {
                return Ok(None);
            }
            if !known.contains(&flag.as_str()) {
                bail!("unknown argument {flag}\n\n{usage}");
            }
            let Some(value) = args.next() else {
                bail!("{flag} needs a value\n\n{usage}");
            };
            values.insert(flag, value);
        }
        Ok(Some(Self { values, usage }))
    }

    /// The whole number given for `flag`, or `default`; it must lie in `range`.
    pub fn number(
        &self,
        flag: &str,
        default: usize,
        range: RangeInclusive<usize>,
    ) -> Result<usize> {
        let Some(value) = self.values.get(flag) else {
            return Ok(default);
        };
        let Ok(n) = value.trim().parse::<usize>() else {
            bail!("{flag}: {value:?} is not a whole number\n\n{}", self.usage);
        };
        if !range.contains(&n) {
            bail!(
                "{flag}: {n} is outside {}..={}\n\n{}",
                range.start(),
                range.end(),
                self.usage
            );
        }
        Ok(n)
    }

    /// The comma-separated list given for `flag`, or `default`; when `allowed` is given,
    /// every item must be one of it. An empty list is an error.
    pub fn list(
        &self,
        flag: &str,
        default: &[&str],
        allowed: Option<&[&str]>,
    ) -> Result<Vec<String>> {
        let items: Vec<String> = match self.values.get(flag) {
            Some(value) => value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => default.iter().map(|s| (*s).to_owned()).collect(),
        };
        if items.is_empty() {
            bail!("{flag}: the list is empty\n\n{}", self.usage);
        }
        if let Some(allowed) = allowed
            && let Some(bad) = items.iter().find(|i| !allowed.contains(&i.as_str()))
        {
            bail!(
                "{flag}: {bad:?} is not one of {}\n\n{}",
                allowed.join(", "),
                self.usage
            );
        }
        Ok(items)
    }

    /// The value given for `flag`, or `default`; it must be one of `allowed`.
    pub fn choice(&self, flag: &str, default: &str, allowed: &[&str]) -> Result<String> {
        let value = self.values.get(flag).map_or(default, String::as_str);
        if !allowed.contains(&value) {
            bail!(
                "{flag}: {value:?} is not one of {}\n\n{}",
                allowed.join(", "),
                self.usage
            );
        }
        Ok(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::Flags;

    const USAGE: &str = "usage: test";

    fn parse(args: &[&str]) -> anyhow::Result<Option<Flags>> {
        Flags::parse(
            args.iter().map(|s| (*s).to_owned()),
            &["--trials", "--profiles", "--format"],
            USAGE,
        )
    }

    #[test]
    fn values_defaults_and_ranges() {
        let flags = parse(&["--trials", "3", "--profiles", "fast, lan"])
            .unwrap()
            .unwrap();
        assert_eq!(flags.number("--trials", 8, 1..=100).unwrap(), 3);
        assert_eq!(flags.number("--peers", 5, 2..=50).unwrap(), 5);
        assert!(flags.number("--trials", 8, 5..=100).is_err());
        assert_eq!(
            flags
                .list("--profiles", &["lan"], Some(&["lan", "fast"]))
                .unwrap(),
            ["fast", "lan"]
        );
        assert_eq!(
            flags
                .choice("--format", "table", &["table", "json"])
                .unwrap(),
            "table"
        );
    }

    #[test]
    fn bad_command_lines_are_errors() {
        assert!(parse(&["--trials"]).is_err());
        assert!(parse(&["--nope", "1"]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
        let flags = parse(&["--trials", "x", "--profiles", "slow", "--format", "xml"])
            .unwrap()
            .unwrap();
        assert!(flags.number("--trials", 8, 1..=100).is_err());
        assert!(
            flags
                .list("--profiles", &["lan"], Some(&["lan", "fast"]))
                .is_err()
        );
        assert!(
            flags
                .choice("--format", "table", &["table", "json"])
                .is_err()
        );
    }
}
