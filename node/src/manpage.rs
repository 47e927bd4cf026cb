//! `knit man DIR`: man pages made from the command line's own definition (clap_mangen):
//! `knit.1`, and one page per subcommand (`knit-service-create.1`, ...), as git and
//! Docker name theirs. Install them with `knit man /usr/local/share/man/man1`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// Writes the pages into `dir` (created if missing); returns the files written.
pub(crate) fn write_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}: choose another folder", dir.display()))?;
    let mut command = Cli::command();
    // Gives every subcommand its full name (`knit service create`, `knit-service-create`).
    command.build();
    let mut written = Vec::new();
    write_page(&command, dir, &mut written)?;
    Ok(written)
}

fn write_page(command: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let name = command
        .get_display_name()
        .unwrap_or_else(|| command.get_name());
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
    {
        write_page(sub, dir, written)?;
    }
    Ok(())
}

/// `knit man DIR`: writes the pages and says where.
pub(crate) fn run(dir: &Path) -> Result<()> {
    let written = write_pages(dir)?;
    eprintln!("wrote {} man pages to {}", written.len(), dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_gets_a_page() {
        let dir = std::env::temp_dir().join(format!("knit-man-test-{}", std::process::id()));
        let written = write_pages(&dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        for page in [
            "knit.1",
            "knit-up.1",
            "knit-service.1",
            "knit-service-create.1",
            "knit-node-ls.1",
        ] {
            assert!(
                names.iter().any(|n| n == page),
                "{page} missing from {names:?}"
            );
        }
        let create = std::fs::read_to_string(dir.join("knit-service-create.1")).unwrap();
        assert!(create.contains(r"\-\-replicas"), "--replicas missing");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
