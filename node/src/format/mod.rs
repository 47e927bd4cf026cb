//! How commands print what they show: `--format table|json|TEMPLATE`, a Go-template-like
//! engine, and tables sized to their content. Used by the client commands and `knit
//! version` alike; it knows nothing of the API.

pub(crate) mod output;
pub(crate) mod table;
pub(crate) mod template;

use template::{Template, TemplateError};

/// How a command prints what it shows (`--format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Format {
    /// The command's own table.
    Table,
    /// One JSON object per line, as `docker ... --format json` prints them.
    Json,
    /// A Go-template-like format: `{{.Name}}`, `table {{.Name}}\t{{.Image}}`.
    Template(Template),
}

impl std::str::FromStr for Format {
    type Err = TemplateError;

    fn from_str(format: &str) -> Result<Self, Self::Err> {
        match format {
            "table" => Ok(Self::Table),
            "json" => Ok(Self::Json),
            template => Template::parse(template).map(Self::Template),
        }
    }
}
