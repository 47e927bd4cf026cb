//! The benchmark programs' command lines: `--flag value` pairs, checked against the flags a
//! program knows, read with defaults and ranges. A bad flag is an error that says what is
//! wrong and shows the usage; it never panics. Every program also accepts the
//! [`COMMON_FLAGS`] (`--format table|json`, read with [`Flags::format`]).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use anyhow::{Result, bail};

use crate::report::Format;

/// Flags every benchmark program accepts beside its own.
pub const COMMON_FLAGS: [&str; 1] = ["--format"];

/// The usage of the [`COMMON_FLAGS`], shown after a program's own.
pub const COMMON_USAGE: &str = "Every bench also accepts:
  --format F      table (markdown, the default) or json (one object per line: the run
                  header, then one per result row and note)";

/// A program's `usage` followed by the [`COMMON_USAGE`]: what `--help` prints.
pub fn help(usage: &str) -> String {
    format!("{usage}\n\n{COMMON_USAGE}")
}

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
    /// `known` or of the [`COMMON_FLAGS`]. Returns `None` when `--help` or `-h` is asked
    /// for (the caller prints [`help`] of `usage` and exits).
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
            if !known.contains(&flag.as_str()) && !COMMON_FLAGS.contains(&flag.as_str()) {
                bail!("unknown argument {flag}\n\n{}", help(usage));
            }
            let Some(value) = args.next() else {
                bail!("{flag} needs a value\n\n{}", help(usage));
            };
            values.insert(flag, value);
        }
        Ok(Some(Self { values, usage }))
    }

    /// The report format given with `--format`: `table` (the default) or `json`.
    pub fn format(&self) -> Result<Format> {
        let name = self.choice("--format", "table", &Format::NAMES)?;
        Format::from_name(&name).map_or_else(
            || bail!("--format: {name:?} is not a format\n\n{}", help(self.usage)),
            Ok,
        )
    }

    /// The whole number given for `flag`, or `default`; it must lie in `range`.
    pub fn number(
        &self,
        flag: &str,
        default: usize,
        range: RangeInclusive<usize>,
    ) -> Result<usize> {
        match self.values.get(flag) {
            Some(value) => self.whole_number(flag, value, &range),
            None => Ok(default),
        }
    }

    /// The comma-separated whole numbers given for `flag`, or `default`; each must lie in
    /// `range`. An empty list is an error.
    pub fn numbers(
        &self,
        flag: &str,
        default: &[usize],
        range: RangeInclusive<usize>,
    ) -> Result<Vec<usize>> {
        let Some(value) = self.values.get(flag) else {
            return Ok(default.to_vec());
        };
        let numbers = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| self.whole_number(flag, item, &range))
            .collect::<Result<Vec<usize>>>()?;
        if numbers.is_empty() {
            bail!("{flag}: the list is empty\n\n{}", help(self.usage));
        }
        Ok(numbers)
    }

    /// The value given for `flag` read by `parse`, or `default`; what `parse` rejects is
    /// an error that names the flag and shows the usage.
    pub fn parsed<T>(
        &self,
        flag: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T>,
    ) -> Result<T> {
        match self.values.get(flag) {
            Some(value) => match parse(value) {
                Ok(parsed) => Ok(parsed),
                Err(e) => bail!("{flag}: {e:#}\n\n{}", help(self.usage)),
            },
            None => Ok(default),
        }
    }

    /// `value`, given for `flag`, as a whole number in `range`.
    fn whole_number(
        &self,
        flag: &str,
        value: &str,
        range: &RangeInclusive<usize>,
    ) -> Result<usize> {
        let Ok(n) = value.trim().parse::<usize>() else {
            bail!(
                "{flag}: {value:?} is not a whole number\n\n{}",
                help(self.usage)
            );
        };
        if !range.contains(&n) {
            if *range.end() == usize::MAX {
                bail!(
                    "{flag}: {n} is below {}\n\n{}",
                    range.start(),
                    help(self.usage)
                );
            }
            bail!(
                "{flag}: {n} is outside {}..={}\n\n{}",
                range.start(),
                range.end(),
                help(self.usage)
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
            bail!("{flag}: the list is empty\n\n{}", help(self.usage));
        }
        if let Some(allowed) = allowed
            && let Some(bad) = items.iter().find(|i| !allowed.contains(&i.as_str()))
        {
            bail!(
                "{flag}: {bad:?} is not one of {}\n\n{}",
                allowed.join(", "),
                help(self.usage)
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
                help(self.usage)
            );
        }
        Ok(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::{COMMON_USAGE, Flags};
    use crate::report::Format;

    const USAGE: &str = "usage: test";

    fn parse(args: &[&str]) -> anyhow::Result<Option<Flags>> {
        Flags::parse(
            args.iter().map(|s| (*s).to_owned()),
            &[
                "--trials",
                "--profiles",
                "--format",
                "--sizes",
                "--duration",
            ],
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

    #[test]
    fn number_lists_and_parsed_values() {
        let flags = parse(&["--sizes", "5, 20,", "--duration", "3s"])
            .unwrap()
            .unwrap();
        assert_eq!(flags.numbers("--sizes", &[2], 2..=200).unwrap(), [5, 20]);
        assert_eq!(flags.numbers("--trials", &[7, 8], 0..=9).unwrap(), [7, 8]);
        assert!(flags.numbers("--sizes", &[2], 6..=200).is_err());
        let err = flags.numbers("--sizes", &[2], 6..=usize::MAX).unwrap_err();
        assert!(
            err.to_string().starts_with("--sizes: 5 is below 6\n"),
            "{err}"
        );
        let secs = |v: &str| Ok(v.trim_end_matches('s').parse::<u64>()?);
        assert_eq!(flags.parsed("--duration", 10, secs).unwrap(), 3);
        assert_eq!(flags.parsed("--format", 10, secs).unwrap(), 10);
        let bad = parse(&["--sizes", "5,x", "--duration", "soon"])
            .unwrap()
            .unwrap();
        assert!(bad.numbers("--sizes", &[2], 2..=200).is_err());
        assert!(bad.numbers("--sizes", &[], 2..=200).is_err());
        let err = bad.parsed("--duration", 10, secs).unwrap_err().to_string();
        assert!(
            err.starts_with("--duration: ") && err.contains(USAGE) && err.ends_with(COMMON_USAGE),
            "{err}"
        );
        let empty = parse(&["--sizes", ","]).unwrap().unwrap();
        assert!(empty.numbers("--sizes", &[2], 2..=200).is_err());
    }

    #[test]
    fn every_program_accepts_the_format() {
        // A program that does not list --format among its flags still takes it.
        let known = ["--trials"];
        let flags = Flags::parse(["--format".to_owned(), "json".to_owned()], &known, USAGE)
            .unwrap()
            .unwrap();
        assert_eq!(flags.format().unwrap(), Format::Json);
        let none = Flags::parse(Vec::new(), &known, USAGE).unwrap().unwrap();
        assert_eq!(none.format().unwrap(), Format::Table);
        let bad = Flags::parse(["--format".to_owned(), "xml".to_owned()], &known, USAGE)
            .unwrap()
            .unwrap();
        let err = bad.format().unwrap_err().to_string();
        assert!(
            err.starts_with("--format: \"xml\" is not one of table, json"),
            "{err}"
        );
        assert!(err.ends_with(COMMON_USAGE), "{err}");
        let unknown = Flags::parse(["--nope".to_owned(), "1".to_owned()], &known, USAGE);
        assert!(unknown.unwrap_err().to_string().contains("--format F"));
    }
}
