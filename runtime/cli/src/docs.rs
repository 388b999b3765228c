//! `meridian completions SHELL` and `meridian man`: generated from the clap definitions in
//! `cli.rs`, so they cannot drift from what the binary accepts.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::out::errln;
use crate::{Exit, exit};

/// The completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<u8> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "meridian", &mut script);
    crate::out::bytes(&script)?;
    Ok(exit::OK)
}

/// The man page of `meridian COMMAND…` as roff on stdout, or every page into `dir`.
pub fn man(command: &[String], dir: Option<&Path>) -> anyhow::Result<u8> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Sets every subcommand's full name (`meridian-runs-list`), which the pages use.
    cmd.build();
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(cmd, dir))
            .map_err(|e| Exit {
                code: exit::INTERNAL,
                message: format!("error: writing the man pages into {}: {e}", dir.display()),
            })?;
        errln!(
            "wrote meridian.1 and a page per command into {}",
            dir.display()
        );
        return Ok(exit::OK);
    }
    let mut page = &cmd;
    for (i, name) in command.iter().enumerate() {
        page = page
            .get_subcommands()
            .find(|c| c.get_name() == name && !c.is_hide_set())
            .ok_or_else(|| {
                Exit::invalid(format!(
                    "error: `meridian {}` is not a command; `meridian --help` lists them",
                    command[..=i].join(" ")
                ))
            })?;
    }
    let mut roff = Vec::new();
    clap_mangen::Man::new(page.clone()).render(&mut roff)?;
    crate::out::bytes(&roff)?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_commands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "meridian", &mut script);
            let script = String::from_utf8(script).unwrap();
            for word in [
                "validate",
                "resume",
                "inputs-file",
                "approve",
                "completions",
            ] {
                assert!(script.contains(word), "{shell:?} lacks {word}");
            }
        }
    }
}
