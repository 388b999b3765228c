//! `meridian`: the thin command-line front of the engine, the sandbox, the store and the lab.

// A binary has no public API: `pub` here only means "visible to sibling modules".
#![allow(unreachable_pub)]

mod cache;
mod cli;
mod commands;
mod docs;
mod doctor;
mod drift;
mod evidence;
mod lab;
mod lease;
mod live;
mod manifest;
mod oci;
mod out;
mod remote;
mod runs;
mod scaffold;
mod scaffold_polyglot;
mod scaffold_sdk;
mod serve;
mod store;
mod summary;
mod view;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes (documented in `meridian --help` and the README).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const AWAITING_APPROVAL: u8 = 3;
    pub const TIMED_OUT: u8 = 4;
    pub const INTERNAL: u8 = 5;
    /// The run succeeded, and its drill missed a target or could not measure one.
    pub const DRILL_NOT_MET: u8 = 6;
}

/// An error that already knows its exit code; anything else is `INTERNAL`.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn invalid(message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Exit {
            code: exit::INVALID,
            message: message.into(),
        })
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Raises the soft limit on open files to the hard one (at most 65,536), as Go programs do at
/// start: the sandbox bounds what steps hold in all (`max_handles`, reserved per step), and
/// that bound must fit under the limit of the process, not under a shell's default of 1,024.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = hard.min(65_536);
        if soft < want {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want, hard);
        }
    }
}

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            });
        }
    };
    raise_open_files_limit();
    // A server reports what it does (loads, reloads, fires, resumes); a command only errors.
    // The OCI cache's warning (a cached artifact changed on disk, fetched again) reaches the
    // person too.
    let quiet = match cli.command {
        cli::Command::Serve(_) => "error,meridian_server=info,meridian_oci=warn",
        // The queue's warnings (a step no worker claims) reach the person waiting.
        _ => "error,meridian_distributed=warn,meridian_oci=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MERIDIAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(quiet)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match try_main(cli).and_then(|code| out::flush().map(|()| code)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<Exit>() {
                if !exit.message.is_empty() {
                    out::err(&format!("{}\n", exit.message));
                }
                return ExitCode::from(exit.code);
            }
            // What went wrong may quote a server, a registry or a file: safe for a terminal.
            let what = format!("{e:#}");
            out::err(&format!(
                "error: {}\n",
                meridian_protocol::text::for_terminal(&what, "  ")
            ));
            ExitCode::from(exit::INTERNAL)
        }
    }
}

fn try_main(cli: cli::Cli) -> anyhow::Result<u8> {
    // The lab's calls block and its daemon builds its own runtime: no runtime of ours around them.
    match cli.command {
        cli::Command::Lab(cmd) => return lab::run(cmd, cli.json),
        cli::Command::Completions { shell } => return docs::completions(shell),
        cli::Command::Man { command, dir } => return docs::man(&command, dir.as_deref()),
        _ => {}
    }
    // A run is one scheduler and I/O-bound steps: one thread avoids a cross-thread wake-up per
    // step (30 µs instead of 62 µs of overhead per no-op step, see the README's benchmarks).
    // Compiles run on the blocking pool either way. A worker runs many steps at once and gets
    // every core.
    let rt = if matches!(cli.command, cli::Command::Worker { .. }) {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    rt.block_on(commands::dispatch(cli))
}
