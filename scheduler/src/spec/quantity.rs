//! Text forms of durations, memory sizes and CPU amounts, in Docker's notation.

use crate::error::SpecError;

/// A decimal number split at its point: `"1.25"` gives `(1, "25")`.
fn split_decimal(digits: &str) -> Option<(u64, &str)> {
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    Some((whole, frac))
}

/// `number * scale`, where number is a decimal text; `None` on overflow or a bad number,
/// `Some(Err(()))` when the result is not a whole number of units.
fn scaled(digits: &str, scale: u64) -> Option<Result<u64, ()>> {
    let (whole, frac) = split_decimal(digits)?;
    let frac = frac.trim_end_matches('0');
    if frac.len() > 18 {
        return Some(Err(()));
    }
    let whole = whole.checked_mul(scale)?;
    if frac.is_empty() {
        return Some(Ok(whole));
    }
    let numerator = u128::from(frac.parse::<u64>().ok()?) * u128::from(scale);
    let denominator = 10u128.pow(frac.len() as u32);
    if numerator % denominator != 0 {
        return Some(Err(()));
    }
    let part = u64::try_from(numerator / denominator).ok()?;
    whole.checked_add(part).map(Ok)
}

/// Reads a duration such as `500ms`, `10s`, `1m30s`, `1.5h` or `0` into milliseconds.
///
/// Units are `ms`, `s`, `m` and `h`, and terms add up (`1h2m3s`). Like Docker (Go's
/// durations), a bare number other than `0` is refused: `10` could mean anything.
pub fn parse_duration_ms(input: &str) -> Result<u64, SpecError> {
    let err = |why: &str| SpecError::Duration {
        input: input.to_owned(),
        why: why.to_owned(),
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(err("it is empty"));
    }
    if text == "0" {
        return Ok(0);
    }
    let mut rest = text;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err("expected a number before each unit"));
        }
        let (number, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(err("missing unit")),
            "us" | "µs" | "ns" => return Err(err("knit counts time in milliseconds")),
            _ => return Err(err(&format!("unknown unit {unit:?}"))),
        };
        let term = match scaled(number, scale) {
            None => return Err(err(&format!("{number:?} is not a number or is too large"))),
            Some(Err(())) => return Err(err("it is finer than a millisecond")),
            Some(Ok(v)) => v,
        };
        total = total
            .checked_add(term)
            .ok_or_else(|| err("it is too large"))?;
        rest = next;
    }
    Ok(total)
}

/// Reads a memory size such as `1024`, `512M`, `1G`, `1.5g` or `256MiB` into bytes.
///
/// As in Docker, the suffixes `K`, `M`, `G` and `T` (any case, optionally followed by `B`
/// or `iB`) are powers of 1024; a bare number is bytes.
pub fn parse_memory_bytes(input: &str) -> Result<u64, SpecError> {
    let err = |why: &str| SpecError::Memory {
        input: input.to_owned(),
        why: why.to_owned(),
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(err("it is empty"));
    }
    let num_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(num_len);
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let scale: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        other => return Err(err(&format!("unknown unit {other:?}"))),
    };
    if number.is_empty() {
        return Err(err("expected a number"));
    }
    match scaled(number, scale) {
        None => Err(err(&format!("{number:?} is not a number or is too large"))),
        Some(Err(())) => Err(err("it is not a whole number of bytes")),
        Some(Ok(v)) => Ok(v),
    }
}

/// Reads a CPU amount such as `0.5`, `2` or `250m` into millicores (`0.5` is 500).
pub fn parse_cpu_millis(input: &str) -> Result<u64, SpecError> {
    let err = |why: &str| SpecError::Cpu {
        input: input.to_owned(),
        why: why.to_owned(),
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(err("it is empty"));
    }
    let (number, scale) = match text.strip_suffix('m') {
        Some(millis) => (millis, 1),
        None => (text, 1_000),
    };
    match scaled(number, scale) {
        None => Err(err("expected a non-negative number")),
        Some(Err(())) => Err(err("it is finer than a millicore (0.001)")),
        Some(Ok(v)) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read() {
        assert_eq!(parse_duration_ms("10s"), Ok(10_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1_500));
        assert_eq!(parse_duration_ms("1h2m3s4ms"), Ok(3_723_004));
        assert_eq!(parse_duration_ms("0"), Ok(0));
    }

    #[test]
    fn bad_durations_say_what_to_write() {
        let e = parse_duration_ms("10").unwrap_err().to_string();
        assert!(e.contains("missing unit") && e.contains("10s"), "{e}");
        let e = parse_duration_ms("10x").unwrap_err().to_string();
        assert!(e.contains("unknown unit \"x\""), "{e}");
        let e = parse_duration_ms("ms").unwrap_err().to_string();
        assert!(e.contains("expected a number"), "{e}");
        let e = parse_duration_ms("1.0005s").unwrap_err().to_string();
        assert!(e.contains("finer than a millisecond"), "{e}");
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("99999999999999999999h").is_err());
    }

    #[test]
    fn memory_reads() {
        assert_eq!(parse_memory_bytes("1024"), Ok(1024));
        assert_eq!(parse_memory_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_memory_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_memory_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_memory_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_memory_bytes("2kb"), Ok(2048));
        assert_eq!(parse_memory_bytes("1.5G"), Ok(3 << 29));
    }

    #[test]
    fn bad_memory_says_what_to_write() {
        let e = parse_memory_bytes("12Q").unwrap_err().to_string();
        assert!(
            e.contains("unknown unit \"q\"") && e.contains("512M"),
            "{e}"
        );
        let e = parse_memory_bytes("G").unwrap_err().to_string();
        assert!(e.contains("expected a number"), "{e}");
        let e = parse_memory_bytes("1.5").unwrap_err().to_string();
        assert!(e.contains("whole number of bytes"), "{e}");
    }

    #[test]
    fn cpu_reads() {
        assert_eq!(parse_cpu_millis("0.5"), Ok(500));
        assert_eq!(parse_cpu_millis("2"), Ok(2_000));
        assert_eq!(parse_cpu_millis(".25"), Ok(250));
        assert_eq!(parse_cpu_millis("250m"), Ok(250));
        let e = parse_cpu_millis("0.0005").unwrap_err().to_string();
        assert!(e.contains("finer than a millicore"), "{e}");
        let e = parse_cpu_millis("-1").unwrap_err().to_string();
        assert!(e.contains("non-negative") && e.contains("0.5"), "{e}");
    }
}
