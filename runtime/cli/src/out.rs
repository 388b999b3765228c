//! Everything the CLI prints on stdout goes through [`outln!`].
//!
//! A reader that goes away early (`meridian runs list | head -1`) closes the pipe; `println!`
//! then panics with "Broken pipe" (exit 101). Here a closed stdout becomes an [`Exit`] with code
//! 0 and no message, which the command returns with `?` like any other error, so the process ends
//! quietly and successfully, as `ls | head` does.
//!
//! Why not restore the default `SIGPIPE` action at the start of `main`, as ripgrep does: the
//! process would then die by the signal wherever it happens to write — its status is 128 + 13,
//! which `set -o pipefail` scripts and CI read as a failure, and it would die without running
//! its cleanup (the lab's child processes, the journal's last commit of a `run` whose report
//! nobody reads any more). Returning an error ends the command through its normal path.

use std::io::Write as _;

use crate::{Exit, exit};

/// Writes to stdout; a closed stdout is a quiet successful exit, any other failure exit 5.
pub fn write(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args).map_err(|e| failed(&e))
}

/// Writes raw bytes (a generated script or page) to stdout, with the same rules.
pub fn bytes(b: &[u8]) -> anyhow::Result<()> {
    std::io::stdout()
        .lock()
        .write_all(b)
        .map_err(|e| failed(&e))
}

/// Flushes what is still buffered (a line without its newline), with the same rules.
pub fn flush() -> anyhow::Result<()> {
    std::io::stdout().lock().flush().map_err(|e| failed(&e))
}

fn failed(e: &std::io::Error) -> anyhow::Error {
    anyhow::Error::new(if e.kind() == std::io::ErrorKind::BrokenPipe {
        Exit {
            code: exit::OK,
            message: String::new(),
        }
    } else {
        Exit {
            code: exit::INTERNAL,
            message: format!("error: cannot write to stdout: {e}"),
        }
    })
}

/// Writes `text` to stderr, ignoring a closed stderr: there is nowhere left to say anything.
pub fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `println!` for the CLI's results: returns `anyhow::Result<()>` instead of panicking.
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// `eprintln!` that cannot panic: a closed stderr (`2>&1 | head -1`) is ignored.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::err(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use errln;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_a_quiet_success_and_other_failures_are_not() {
        let e = failed(&std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let x = e.downcast_ref::<Exit>().unwrap();
        assert_eq!((x.code, x.message.as_str()), (exit::OK, ""));
        let e = failed(&std::io::Error::from(std::io::ErrorKind::StorageFull));
        let x = e.downcast_ref::<Exit>().unwrap();
        assert_eq!(x.code, exit::INTERNAL);
        assert!(x.message.contains("stdout"), "{}", x.message);
    }
}
