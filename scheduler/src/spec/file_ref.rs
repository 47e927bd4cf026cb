//! The reference syntax secrets and configs share, as Docker's `--secret` and `--config`
//! read it: `NAME`, or `source=NAME[,target=...][,uid=N][,gid=N][,mode=0440]`.

/// A reference's fields as written; what each kind makes of them (its default target and
/// mode, its checks) is the kind's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Fields {
    pub(super) source: String,
    pub(super) target: Option<String>,
    pub(super) uid: u32,
    pub(super) gid: u32,
    /// Octal, as written.
    pub(super) mode: Option<u32>,
}

/// Reads `input`; the error says what is wrong, for the kind's error to wrap.
pub(super) fn parse(input: &str) -> Result<Fields, String> {
    let text = input.trim();
    if !text.contains('=') {
        return Ok(Fields {
            source: text.to_owned(),
            ..Fields::default()
        });
    }
    let mut fields = Fields::default();
    let mut source = None;
    for field in text.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!("{field:?} needs a value ({field}=...)"));
        };
        let value = value.trim();
        let number = |radix: u32| {
            u32::from_str_radix(value, radix).map_err(|_| format!("{key}={value}: not a number"))
        };
        match key.trim() {
            "source" | "src" => source = Some(value.to_owned()),
            "target" => fields.target = Some(value.to_owned()),
            "uid" => fields.uid = number(10)?,
            "gid" => fields.gid = number(10)?,
            "mode" => fields.mode = Some(number(8)?),
            other => {
                return Err(format!(
                    "unknown key {other:?} (source, target, uid, gid, mode)"
                ));
            }
        }
    }
    fields.source = source.ok_or_else(|| "no source".to_owned())?;
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_read() {
        assert_eq!(parse(" db ").unwrap().source, "db");
        let full = parse("source=db,target=/x,uid=7,gid=8,mode=0440").unwrap();
        assert_eq!(
            full,
            Fields {
                source: "db".into(),
                target: Some("/x".into()),
                uid: 7,
                gid: 8,
                mode: Some(0o440),
            }
        );
        assert!(parse("target=/x").unwrap_err().contains("no source"));
        assert!(parse("source=a,uid").unwrap_err().contains("needs a value"));
        assert!(
            parse("source=a,mode=9")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            parse("source=a,owner=b")
                .unwrap_err()
                .contains("unknown key")
        );
    }
}
