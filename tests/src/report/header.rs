//! The run header every benchmark prints first: which program, the command line, when
//! (UTC), at which git revision, with which `knit`, on which CPU. Figures pasted into
//! BENCHMARKS.md carry it, so that a reader can tell what ran where.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// How long `git rev-parse` may take before the revision is left out.
const GIT_TIMEOUT: Duration = Duration::from_secs(5);

/// What describes one run of a benchmark program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The program's name (`bench-detect`).
    pub program: String,
    /// The command line as typed, the program by its name, each argument quoted for a
    /// POSIX shell where it needs it.
    pub command: String,
    /// When the run started, `YYYY-MM-DD HH:MM:SS UTC`.
    pub date: String,
    /// `git rev-parse --short HEAD` of the workspace, when git can tell.
    pub git: Option<String>,
    /// The `knit` binary measured, when the program runs one.
    pub knit: Option<PathBuf>,
    /// The CPU's `model name` in /proc/cpuinfo, when there is one.
    pub cpu: Option<String>,
    /// Logical cores: `processor` entries of /proc/cpuinfo, else what the OS reports.
    pub cores: usize,
}

impl Header {
    /// The header of this run of `program` (its own command line, the clock, git, the
    /// machine); `knit` is the binary it measures, if any.
    pub fn collect(program: &str, knit: Option<&Path>) -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let (cpu, cores) = cpu_of(&cpuinfo);
        let cores = if cores > 0 {
            cores
        } else {
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
        };
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            program: program.to_owned(),
            command: command_line(program, &args),
            date: utc_date(since_epoch.as_secs()),
            git: git_revision(),
            knit: knit.map(Path::to_path_buf),
            cpu,
            cores,
        }
    }

    /// The header as markdown lines, ending with a newline.
    pub fn markdown(&self) -> String {
        let mut run = format!("{}, run {}", self.program, self.date);
        if let Some(git) = &self.git {
            run.push_str(&format!(" at git {git}"));
        }
        run.push_str(&format!(
            " on {} ({} cores)",
            self.cpu.as_deref().unwrap_or("an unknown CPU"),
            self.cores
        ));
        let mut out = format!("{run}\n\nCommand: `{}`\n", self.command);
        if let Some(knit) = &self.knit {
            out.push_str(&format!("knit: `{}`\n", knit.display()));
        }
        out
    }

    /// The header as one JSON object, `"kind": "header"`.
    pub fn json(&self) -> Value {
        json!({
            "kind": "header",
            "program": self.program,
            "command": self.command,
            "date": self.date,
            "git": self.git,
            "knit": self.knit.as_ref().map(|k| k.display().to_string()),
            "cpu": self.cpu,
            "cores": self.cores,
        })
    }
}

/// `program` and `args` as one line a POSIX shell reads back as the same words.
fn command_line(program: &str, args: &[String]) -> String {
    std::iter::once(program.to_owned())
        .chain(args.iter().map(|a| shell_word(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word` as is when the shell leaves it alone, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/=+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The CPU model (first `model name`, else `Hardware` or `cpu model`) and the number of
/// `processor` entries in /proc/cpuinfo text.
fn cpu_of(cpuinfo: &str) -> (Option<String>, usize) {
    let field = |line: &str, name: &str| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_owned())
    };
    let model = ["model name", "Hardware", "cpu model"]
        .iter()
        .find_map(|name| {
            cpuinfo
                .lines()
                .find_map(|l| field(l, name))
                .filter(|v| !v.is_empty())
        });
    let cores = cpuinfo
        .lines()
        .filter(|l| field(l, "processor").is_some())
        .count();
    (model, cores)
}

/// The workspace's `git rev-parse --short HEAD`, if git is there and answers in time.
fn git_revision() -> Option<String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let out = crate::run_bounded(
        Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(workspace),
        GIT_TIMEOUT,
    )
    .ok()?;
    let rev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !rev.is_empty()).then_some(rev)
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian).
fn utc_date(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The date `days` after 1970-01-01, by Howard Hinnant's `civil_from_days` (eras of 400
/// years of 146,097 days, years starting in March so that the leap day comes last).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{Header, command_line, cpu_of, utc_date};

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_date(1_709_251_199), "2024-02-29 23:59:59 UTC");
        assert_eq!(utc_date(1_735_689_600), "2025-01-01 00:00:00 UTC");
        assert_eq!(utc_date(4_107_542_400), "2100-03-01 00:00:00 UTC");
    }

    #[test]
    fn the_cpu_is_read_from_cpuinfo() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n\n\
                    processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_of(text), (Some("AMD EPYC 7B13".to_owned()), 2));
        let arm = "processor : 0\nBogoMIPS : 50.00\nprocessor : 1\nHardware : BCM2835\n";
        assert_eq!(cpu_of(arm), (Some("BCM2835".to_owned()), 2));
        assert_eq!(cpu_of(""), (None, 0));
    }

    #[test]
    fn the_command_line_reads_back_in_a_shell() {
        let args: Vec<String> = ["--sizes", "5,20", "--note", "it's a run", ""]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            command_line("bench-x", &args),
            r"bench-x --sizes 5,20 --note 'it'\''s a run' ''"
        );
    }

    #[test]
    fn the_header_names_the_run() {
        let header = Header {
            program: "bench-x".into(),
            command: "bench-x --trials 1".into(),
            date: "2026-01-02 03:04:05 UTC".into(),
            git: Some("abc1234".into()),
            knit: Some(PathBuf::from("/t/knit")),
            cpu: Some("AMD EPYC".into()),
            cores: 2,
        };
        assert_eq!(
            header.markdown(),
            "bench-x, run 2026-01-02 03:04:05 UTC at git abc1234 on AMD EPYC (2 cores)\n\n\
             Command: `bench-x --trials 1`\nknit: `/t/knit`\n"
        );
        let j = header.json();
        assert_eq!(j["kind"], "header");
        assert_eq!(j["git"], "abc1234");
        assert_eq!(j["cores"], 2);
        let bare = Header {
            git: None,
            knit: None,
            cpu: None,
            ..header
        };
        assert_eq!(
            bare.markdown(),
            "bench-x, run 2026-01-02 03:04:05 UTC on an unknown CPU (2 cores)\n\n\
             Command: `bench-x --trials 1`\n"
        );
        assert!(bare.json()["git"].is_null());
        // This machine's own header has a date and at least one core.
        let own = Header::collect("bench-x", None);
        assert!(own.date.ends_with(" UTC") && own.cores > 0, "{own:?}");
    }
}
