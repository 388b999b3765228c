//! The live table on a real terminal: `meridian run` under a pseudo-terminal of 80 and 200
//! columns, its output replayed through a terminal emulator (vt100), and the screen asserted:
//! every row once (no copies piled up by wrapped rows), rows cut to the width, the run's last
//! line below the table, colour only without `NO_COLOR`, and an approval prompt that does not
//! leave a second table behind.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};

use crate::support::Scratch;

/// Longer than a narrow terminal: the row's note must be cut, not wrapped.
const LONG: &str = "a-very-long-log-line-that-does-not-fit-in-eighty-columns-and-would-wrap-the-row-if-it-were-printed-whole-END";

fn workflow() -> String {
    format!(
        r#"
name: tty
steps:
  - id: first-step-with-a-long-name
    uses: ./kitchen_sink.wasm
    with: {{ops: [{{op: log, level: info, message: "{LONG}"}}, {{op: sleep, ms: 700}}]}}
  - id: second
    needs: first-step-with-a-long-name
    uses: ./kitchen_sink.wasm
    strategy: {{matrix: {{region: [eu, us]}}}}
    with: {{ops: [{{op: sleep, ms: 400}}]}}
  - id: gate
    needs: second
    uses: hello
    approval: {{message: "ship it?"}}
"#
    )
}

/// What a terminal of `cols` columns shows after `meridian ARGS…` ran on it, and the raw bytes.
/// Each `(prompt, answer)` is typed once `prompt` has appeared.
fn on_terminal(
    s: &Scratch,
    args: &[&str],
    cols: u16,
    env: &[(&str, &str)],
    answers: &[(&str, &str)],
) -> (i32, String, Vec<u8>) {
    let size = Winsize {
        ws_row: 50,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size), None).expect("openpty");
    let slave = |fd: &OwnedFd| Stdio::from(fd.as_fd().try_clone_to_owned().unwrap());
    let mut cmd = s.cmd();
    cmd.args(args)
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("MERIDIAN_PLAIN")
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn meridian");
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Ends with EIO once the child and its descendants closed the terminal.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut raw = Vec::new();
    let mut pending = answers.to_vec();
    let deadline = Instant::now() + Duration::from_secs(120);
    let code = loop {
        while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(50)) {
            raw.extend_from_slice(&chunk);
        }
        if let Some((prompt, answer)) = pending.first()
            && String::from_utf8_lossy(&raw).contains(prompt)
        {
            master.write_all(answer.as_bytes()).unwrap();
            pending.remove(0);
        }
        if let Some(status) = child.try_wait().unwrap() {
            while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
                raw.extend_from_slice(&chunk);
            }
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("meridian did not end: {}", String::from_utf8_lossy(&raw));
        }
    };
    let mut parser = vt100::Parser::new(50, cols, 0);
    parser.process(&raw);
    // Row by row (`contents()` would join a full-width row with the next).
    let screen: Vec<String> = parser
        .screen()
        .rows(0, cols)
        .map(|r| r.trim_end().to_string())
        .collect();
    (code, screen.join("\n"), raw)
}

fn row_of(screen: &str, needle: &str) -> usize {
    let rows: Vec<usize> = screen
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "`{needle}` on {} rows:\n{screen}",
        rows.len()
    );
    rows[0]
}

/// An SGR colour or attribute sequence (`ESC [ … m`).
fn has_sgr(raw: &[u8]) -> bool {
    raw.windows(2).enumerate().any(|(i, w)| {
        w == b"\x1b["
            && raw[i + 2..]
                .iter()
                .take_while(|b| b.is_ascii_digit() || **b == b';')
                .count()
                .checked_add(i + 2)
                .and_then(|end| raw.get(end))
                == Some(&b'm')
    })
}

#[test]
fn the_live_table_fits_the_terminal_and_is_drawn_once() {
    let s = Scratch::new();
    s.kitchen_sink();
    s.write("tty.yaml", &workflow());
    for cols in [80u16, 200] {
        let (code, screen, raw) = on_terminal(
            &s,
            &["run", "tty.yaml"],
            cols,
            &[],
            &[("approve step `gate`? [y/N]", "y\n")],
        );
        assert_eq!(code, 0, "{screen}");
        let prompt = row_of(&screen, "approve step `gate`?");
        // Table rows start with their mark; the summary printed after the run does not.
        let rows: Vec<usize> = [
            "✓ first-step-with-a-long-name",
            "✓ second[eu]",
            "✓ second[us]",
            "✓ gate ",
        ]
        .iter()
        .map(|id| row_of(&screen, id))
        .collect();
        // The run's last line, under the table (the summary repeats it further down).
        let last = screen
            .lines()
            .position(|l| l.starts_with("run succeeded in"))
            .expect("the run's last line");
        // One table, below the answered prompt, and the run's last line below it.
        assert!(rows.iter().all(|r| *r > prompt), "{screen}");
        assert!(rows.iter().all(|r| *r < last), "{screen}");
        for line in screen.lines() {
            assert!(line.chars().count() <= usize::from(cols), "{line}");
        }
        let first = screen.lines().nth(rows[0]).unwrap();
        if cols == 80 {
            assert!(
                !first.contains("END"),
                "the note is cut at 80 columns: {first}"
            );
            assert!(first.contains("log: a-very-long"), "{first}");
        } else {
            assert!(
                first.contains("END"),
                "the note fits in 200 columns: {first}"
            );
        }
        assert!(has_sgr(&raw), "colour on a terminal without NO_COLOR");
    }

    let (code, screen, raw) = on_terminal(
        &s,
        &["run", "tty.yaml", "--approve", "gate"],
        80,
        &[("NO_COLOR", "1")],
        &[],
    );
    assert_eq!(code, 0, "{screen}");
    row_of(&screen, "✓ second[us]");
    assert!(
        !has_sgr(&raw),
        "NO_COLOR: no colour codes: {:?}",
        String::from_utf8_lossy(&raw)
    );

    // TERM=dumb: no table redrawn in place; plain lines.
    let (code, screen, raw) = on_terminal(
        &s,
        &["run", "tty.yaml", "--approve", "gate"],
        80,
        &[("TERM", "dumb")],
        &[],
    );
    assert_eq!(code, 0, "{screen}");
    assert!(!raw.contains(&0x1b), "no escape sequence at all: {screen}");
    assert!(screen.contains("second[us]: attempt 1 started"), "{screen}");
}
