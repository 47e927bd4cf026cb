//! `knit completion bash|zsh|fish`: a shell completion script, made from the command line's
//! own definition (clap_complete) so that it never lags behind the flags.
//!
//! Install it where the shell looks: `knit completion bash > /etc/bash_completion.d/knit`,
//! `knit completion zsh > "${fpath[1]}/_knit"`, `knit completion fish >
//! ~/.config/fish/completions/knit.fish`.

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The completion script for `shell`.
pub(crate) fn script(shell: Shell) -> Vec<u8> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "knit", &mut script);
    script
}

/// Prints the completion script for `shell`.
pub(crate) fn run(shell: Shell) -> Result<()> {
    crate::client::output::write_stdout(&String::from_utf8_lossy(&script(shell)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_completes_the_commands() {
        let script = String::from_utf8(script(Shell::Bash)).unwrap();
        for word in ["service", "node", "--replicas", "--format"] {
            assert!(script.contains(word), "{word} missing");
        }
    }

    #[test]
    fn every_shell_gets_a_script() {
        for shell in [Shell::Zsh, Shell::Fish] {
            assert!(
                String::from_utf8(script(shell))
                    .unwrap()
                    .contains("service")
            );
        }
    }
}
