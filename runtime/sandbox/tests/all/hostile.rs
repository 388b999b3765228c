//! Hostile guests: each fails its own step cleanly, and the sandbox keeps working.

use std::time::{Duration, Instant};

use meridian_sandbox::{Call, Capabilities, LogSource, Preopen, StepFailure};
use serde_json::json;

use crate::server::Server;
use crate::support::{assert_still_healthy, inv, load, run, sandbox};

/// The deadline holds next to CPU-burning neighbours: sixteen busy threads on this machine's cores
/// delay the epoch thread's wake-ups, which used to add up over a timeout's ticks.
#[tokio::test]
async fn a_timeout_holds_under_load() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let burners: Vec<_> = (0..16)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let c = load(meridian_artifacts::LOOP_FOREVER);
    let timeout = Duration::from_secs(3);
    let started = Instant::now();
    let err = sandbox()
        .invoke(
            &c,
            Call {
                timeout,
                ..run(json!({}))
            },
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for b in burners {
        b.join().unwrap();
    }
    assert_eq!(err, StepFailure::Timeout(timeout));
    // A generous bound, not a performance figure: counting 2 ms ticks let a 3 s timeout run
    // more than a second late here.
    eprintln!("a 3 s timeout under load took {took:?}");
    assert!(took < timeout + Duration::from_millis(500), "took {took:?}");
    assert!(took >= timeout, "stopped before its deadline: {took:?}");
}

/// Regression: a guest looping on the CPU held its thread until its timeout, so on a server
/// (or the CLI's one-thread runtime) nothing else ran meanwhile: no API request, no scheduler
/// tick, no cancellation. A running guest yields at every epoch tick now. On this one-thread
/// runtime, a task that only sleeps 20 ms finishes while the loop still runs, and dropping
/// the call (a cancellation) stops the guest.
#[tokio::test]
async fn a_looping_guest_lets_the_rest_of_its_thread_run() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let c = load(meridian_artifacts::LOOP_FOREVER);
    let sb = sandbox();
    let looping = Arc::new(AtomicBool::new(true));
    let call = {
        let looping = looping.clone();
        async move {
            let r = sb
                .invoke(
                    &c,
                    Call {
                        timeout: Duration::from_secs(30),
                        ..run(json!({}))
                    },
                )
                .await;
            looping.store(false, Ordering::SeqCst);
            r
        }
    };
    let other = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        looping.load(Ordering::SeqCst)
    };
    tokio::select! {
        r = call => panic!("the loop ended before the other task ran: {r:?}"),
        still_looping = other => assert!(still_looping),
    }
    // The call's future was dropped by the select: the guest no longer runs, and the sandbox
    // serves the next call.
    assert_still_healthy().await;
}

#[tokio::test]
async fn infinite_loop_times_out() {
    let c = load(meridian_artifacts::LOOP_FOREVER);
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = sandbox()
        .invoke(
            &c,
            Call {
                timeout,
                ..run(json!({}))
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err, StepFailure::Timeout(timeout));
    // Generous bound (not a performance assertion): the epoch deadline fired, not some later
    // backstop.
    assert!(
        started.elapsed() < timeout + Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.is_retryable());
    assert_still_healthy().await;
}

#[tokio::test]
async fn waiting_in_a_host_call_times_out() {
    // The guest blocks in WASI's clock (a host call), where epoch checks cannot reach it: the
    // wall-clock bound around the call must stop it.
    let c = load(meridian_artifacts::KITCHEN_SINK);
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = sandbox()
        .invoke(
            &c,
            Call {
                timeout,
                ..run(json!({"ops": [{"op": "sleep", "ms": 60_000}]}))
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err, StepFailure::Timeout(timeout));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_still_healthy().await;
}

#[tokio::test]
async fn memory_bomb_hits_the_cap() {
    let c = load(meridian_artifacts::MEMORY_BOMB);
    let limit = 32 << 20;
    let err = sandbox()
        .invoke(
            &c,
            Call {
                memory_limit: limit,
                ..run(json!({}))
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err, StepFailure::OutOfMemory { limit });
    assert!(err.to_string().contains("memory limit of 32 MiB"), "{err}");
    assert_still_healthy().await;
}

#[tokio::test]
async fn memory_cap_above_sandbox_maximum_is_a_grant_error() {
    let c = load(meridian_artifacts::NOOP);
    let err = sandbox()
        .invoke(
            &c,
            Call {
                memory_limit: 8 << 30,
                ..run(json!({}))
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StepFailure::Grant(m) if m.contains("above the sandbox maximum")),
        "{err:?}"
    );
}

#[tokio::test]
async fn deep_recursion_traps_with_stack_overflow() {
    let c = load(meridian_artifacts::DEEP_RECURSION);
    let err = sandbox().invoke(&c, run(json!({}))).await.unwrap_err();
    assert!(
        matches!(&err, StepFailure::Trap(m) if m.contains("stack overflow")),
        "{err:?}"
    );
    assert_still_healthy().await;
}

#[tokio::test]
async fn panic_is_a_trap_with_the_message() {
    let c = load(meridian_artifacts::PANIC);
    let report = sandbox()
        .execute(&c, run(json!({"message": "the disk is lava"})))
        .await;
    let err = report.result.unwrap_err();
    assert!(
        matches!(&err, StepFailure::Trap(m) if m.contains("panicked at") && m.contains("the disk is lava")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    // The raw panic report is in the log as stderr.
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.source == LogSource::Stderr && l.message.contains("the disk is lava"))
    );
    assert_still_healthy().await;
}

#[tokio::test]
async fn huge_output_is_refused_by_size() {
    let c = load(meridian_artifacts::HUGE_OUTPUT);
    let call = Call {
        memory_limit: 512 << 20,
        output_limit: 1 << 20,
        ..run(json!({}))
    };
    let err = sandbox().invoke(&c, call).await.unwrap_err();
    match err {
        StepFailure::OutputTooLarge { size, limit } => {
            assert!(size > 100_000_000, "{size}");
            assert_eq!(limit, 1 << 20);
        }
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }
    assert_still_healthy().await;
}

#[tokio::test]
async fn files_outside_the_preopen_are_invisible() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.txt"), b"hello").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("escape")).unwrap();
    std::os::unix::fs::symlink("..", dir.path().join("up")).unwrap();
    let caps = Capabilities {
        fs: vec![Preopen {
            host: dir.path().to_owned(),
            guest: "/data".into(),
            writable: false,
        }],
        ..Capabilities::default()
    };
    let c = load(meridian_artifacts::READ_OUTSIDE_PREOPEN);
    let paths = [
        "/data/ok.txt",
        "/etc/passwd",
        "/data/../../etc/passwd",
        "../etc/passwd",
        "/data/escape",
        "/data/up/x",
        "/proc/self/environ",
    ];
    let out = sandbox()
        .invoke(&c, Call::run(inv(json!({ "paths": paths })), caps))
        .await
        .unwrap();
    let attempts = out.output["attempts"].as_array().unwrap();
    assert_eq!(
        attempts[0]["read"], 5,
        "the granted file is readable: {attempts:?}"
    );
    for a in &attempts[1..] {
        assert!(
            a["read"].is_null() && a["error"].is_string(),
            "escaped: {a}"
        );
    }
    assert_eq!(out.output["env"], json!([]), "no environment variables");
    assert_eq!(out.output["args"], json!([]), "no arguments");
    assert_still_healthy().await;
}

#[tokio::test]
async fn no_preopen_means_no_files_at_all() {
    let c = load(meridian_artifacts::READ_OUTSIDE_PREOPEN);
    let out = sandbox()
        .invoke(&c, run(json!({ "paths": ["/", ".", "/tmp"] })))
        .await
        .unwrap();
    for a in out.output["attempts"].as_array().unwrap() {
        assert!(a["read"].is_null(), "{a}");
    }
}

#[tokio::test]
async fn http_escapes_are_denied() {
    let server = Server::start();
    let port = server.addr.port();
    let caps = Capabilities {
        http: meridian_sandbox::HttpPolicy::allowing([server.origin()]),
        ..Capabilities::default()
    };
    let urls = [
        server.url("/ok"),                                               // granted
        format!("http://localhost:{port}/ok"),                           // same host, other name
        format!("http://127.0.0.2:{port}/ok"),                           // other IP literal
        format!("http://[::1]:{port}/ok"),                               // IPv6 loopback
        format!("http://127.0.0.1:{}/ok", port.wrapping_add(1)),         // other port
        server.url(&format!("/redirect?to=http://localhost:{port}/ok")), // redirect out
        server.url("/redirect?to=/ok"),                                  // redirect within
        format!("https://127.0.0.1:{port}/ok"),                          // other scheme
        "file:///etc/passwd".to_owned(),
    ];
    let c = load(meridian_artifacts::HTTP_ESCAPE);
    let input = json!({ "urls": urls, "raw_socket": format!("127.0.0.1:{port}") });
    let out = sandbox()
        .invoke(&c, Call::run(inv(input), caps))
        .await
        .unwrap();
    let results: Vec<&str> = out.output["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        [
            "ok 200", "denied", "denied", "denied", "denied", "denied", "ok 200", "denied",
            "denied"
        ],
        "{:#}",
        out.output
    );
    let redirect = &out.output["outcomes"][5]["detail"];
    assert!(
        redirect
            .as_str()
            .unwrap()
            .contains("redirected to http://localhost"),
        "{redirect}"
    );
    assert_ne!(
        out.output["raw_socket"], "connected",
        "WASI sockets must be closed"
    );
    // Only the two granted requests (and the redirect hop) reached the server.
    let paths: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
    assert!(
        paths
            .iter()
            .all(|p| p == "/ok" || p.starts_with("/redirect")),
        "{paths:?}"
    );
    assert_eq!(paths.iter().filter(|p| *p == "/ok").count(), 2, "{paths:?}");
}

#[tokio::test]
async fn no_http_grant_means_no_http() {
    let server = Server::start();
    let c = load(meridian_artifacts::HTTP_ESCAPE);
    let out = sandbox()
        .invoke(&c, run(json!({ "urls": [server.url("/ok")] })))
        .await
        .unwrap();
    assert_eq!(out.output["outcomes"][0]["result"], "denied");
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn sql_without_grant_is_denied() {
    let c = load(meridian_artifacts::SQL_NOT_GRANTED);
    let mut caps = Capabilities::default();
    caps.sql
        .insert("other".into(), "host=127.0.0.1 port=1 user=x".into());
    let out = sandbox()
        .invoke(&c, Call::run(inv(json!({"connection": "primary"})), caps))
        .await
        .unwrap();
    let result = out.output["result"].as_str().unwrap();
    assert!(
        result.starts_with("denied: connection `primary` is not granted"),
        "{result}"
    );
}

#[tokio::test]
async fn secrets_are_masked_everywhere() {
    let secret = "s3cr3t-\"TOKEN\"-välue";
    let other_run_secret = "other-run-secret-42";
    let mut caps = Capabilities {
        mask: vec![other_run_secret.into()],
        ..Capabilities::default()
    };
    caps.secrets.insert("token".into(), secret.into());
    let c = load(meridian_artifacts::ECHO_SECRET);

    let report = sandbox()
        .execute(&c, Call::run(inv(json!({"name": "token"})), caps.clone()))
        .await;
    let out = report.result.unwrap();
    assert_eq!(out, json!({"leaked": "***", "sentence": "token=***;"}));
    assert!(report.logs.len() >= 3, "{:?}", report.logs);
    for line in &report.logs {
        let text = format!("{} {:?}", line.message, line.fields);
        assert!(!text.contains("s3cr3t"), "leaked in {line:?}");
    }
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.source == LogSource::Stdout && l.message == "stdout: ***")
    );
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.source == LogSource::Stderr && l.message == "stderr: ***")
    );

    let err = sandbox()
        .invoke(
            &c,
            Call::run(inv(json!({"name": "token", "fail": true})), caps),
        )
        .await
        .unwrap_err();
    assert_eq!(err, StepFailure::Fatal("failed while holding ***".into()));
}

#[tokio::test]
async fn ungranted_secret_is_refused() {
    let c = load(meridian_artifacts::KITCHEN_SINK);
    let out = sandbox()
        .invoke(&c, run(json!({"ops": [{"op": "secret", "name": "token"}]})))
        .await
        .unwrap();
    let e = out.output["results"][0]["error"].as_str().unwrap();
    assert!(e.contains("secret `token` is not granted"), "{e}");
}

/// Regression: a guest calling `exit(0)` showed only "error while executing at wasm
/// backtrace:"; the cause is the exit, named with its code.
#[tokio::test]
async fn exit_from_a_step_is_named() {
    let c = load(meridian_artifacts::MISBEHAVE);
    let err = sandbox()
        .invoke(&c, run(json!({"what": "exit"})))
        .await
        .unwrap_err();
    let StepFailure::Trap(m) = &err else {
        panic!("{err:?}")
    };
    assert!(m.starts_with("the step called exit(0)"), "{m}");
    assert!(m.contains("return from `run`"), "{m}");
    assert_still_healthy().await;
}

/// Regression: a plan flood showed only the wasm backtrace header; the host's own message
/// (the sandbox's limit) is what the user sees.
#[tokio::test]
async fn a_plan_flood_names_the_limit() {
    let server = Server::start();
    let caps = Capabilities {
        http: meridian_sandbox::HttpPolicy::allowing([server.origin()]),
        ..Capabilities::default()
    };
    let c = load(meridian_artifacts::MISBEHAVE);
    let err = sandbox()
        .invoke(
            &c,
            Call::run(
                crate::support::plan_inv(json!({"what": "plan-flood", "base": server.url("")})),
                caps,
            ),
        )
        .await
        .unwrap_err();
    let StepFailure::Trap(m) = &err else {
        panic!("{err:?}")
    };
    assert!(
        m.starts_with("the step recorded more than 10000 planned changes"),
        "{m}"
    );
    assert!(!m.contains("wasm backtrace"), "{m}");
    assert!(server.seen().is_empty(), "plan mode sent nothing");
}

/// Regression: overflowing the shadow stack (in linear memory) showed as "out of bounds memory
/// access"; it is named a stack overflow, with the size of the stack the step had.
#[tokio::test]
async fn a_shadow_stack_overflow_is_named() {
    let c = load(meridian_artifacts::MISBEHAVE);
    let err = sandbox()
        .invoke(&c, run(json!({"what": "shadow-stack"})))
        .await
        .unwrap_err();
    let StepFailure::Trap(m) = &err else {
        panic!("{err:?}")
    };
    // Rust's default for wasm32: 1 MiB, read from the component's `__stack_pointer`.
    assert!(
        m.starts_with("stack overflow in the step (its shadow stack is 1048576 bytes)"),
        "{m}"
    );
    assert_still_healthy().await;
}

/// A step that logs far past the sandbox's bound keeps its first lines and its last (the ones
/// before its failure), with a note of how many between were not kept — counted, not guessed.
#[tokio::test]
async fn a_log_flood_keeps_its_first_and_last_lines_and_counts_the_rest() {
    let c = load(meridian_artifacts::MISBEHAVE);
    let report = sandbox()
        .execute(&c, run(json!({"what": "log-flood", "count": 30_000})))
        .await;
    assert!(
        matches!(&report.result, Err(StepFailure::Fatal(m)) if m == "flooded"),
        "{:?}",
        report.result
    );
    let logs = &report.logs;
    assert!(
        logs[0].message.starts_with("line        0 "),
        "{:?}",
        logs[0]
    );
    let note = logs
        .iter()
        .position(|l| l.message.starts_with("log truncated"))
        .expect("a truncation note");
    // 1 MiB of 100-byte lines is 10,485 lines; the last 50 follow the note.
    assert_eq!(note, 10_485, "{:?}", logs[note]);
    assert_eq!(logs.len() - note - 1, 50);
    assert!(
        logs[note]
            .message
            .contains("19465 lines after that were not kept, the last 50 follow"),
        "{:?}",
        logs[note]
    );
    assert_eq!(logs.last().unwrap().message, "last line");
}

/// Nothing one instance writes to its linear memory (a zeroed static, the data segment, zeroed
/// heap) is there for the next instance of the same component, which the pooling allocator
/// puts in the same slot, whose pages it keeps mapped where the kernel can tell which to reset.
#[tokio::test]
async fn a_step_finds_nothing_an_earlier_instance_wrote() {
    let c = load(meridian_artifacts::MISBEHAVE);
    let sandbox = sandbox();
    for i in 0..3 {
        let out = sandbox
            .invoke(&c, run(json!({"what": "residue"})))
            .await
            .unwrap();
        assert_eq!(out.output["residue"], 0, "instance {i}: {:?}", out.output);
        // The same probe, again in the same instance, sees its own writes.
        assert_eq!(out.output["probe"], 2, "instance {i}: {:?}", out.output);
    }
}

/// A relative symbolic link in a writable preopen could point out of it for host tools to
/// follow; creating any symbolic link is refused, and nothing is left behind.
#[tokio::test]
async fn a_step_cannot_create_a_symlink_in_a_writable_preopen() {
    let dir = tempfile::tempdir().unwrap();
    let caps = Capabilities {
        fs: vec![Preopen {
            host: dir.path().to_owned(),
            guest: "/out".into(),
            writable: true,
        }],
        ..Capabilities::default()
    };
    let c = load(meridian_artifacts::FS_WRITER);
    for target in ["../../../../etc/passwd", "inside.txt"] {
        let out = sandbox()
            .invoke(
                &c,
                Call::run(
                    inv(json!({"path": "/out/link", "symlink_to": target})),
                    caps.clone(),
                ),
            )
            .await
            .unwrap();
        let said = out.output["write"].as_str().unwrap();
        assert_ne!(said, "ok", "a symlink to {target} was created");
        assert!(
            said.to_lowercase().contains("not permitted"),
            "{target}: {said}"
        );
        assert!(
            std::fs::symlink_metadata(dir.path().join("link")).is_err(),
            "a link was left behind"
        );
    }
    // Plain files still work.
    let out = sandbox()
        .invoke(
            &c,
            Call::run(inv(json!({"path": "/out/f.txt", "content": "x"})), caps),
        )
        .await
        .unwrap();
    assert_eq!(out.output["write"], "ok");
}

/// Regression: a step with only a read-only `fs` grant could open files until the runner's
/// process limit, and a step running next to it then failed with "Too many open files". A step
/// stops at its own `limits.handles`, named as the cause, and its neighbour keeps working.
#[tokio::test]
async fn a_file_descriptor_bomb_stops_at_its_own_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "x").unwrap();
    let caps = Capabilities {
        fs: vec![Preopen {
            host: dir.path().to_owned(),
            guest: "/data".into(),
            writable: false,
        }],
        ..Capabilities::default()
    };
    let c = load(meridian_artifacts::MISBEHAVE);
    let sb = sandbox();
    let opens = |count: u64| inv(json!({"what": "fd-bomb", "path": "/data/f", "count": count}));
    let bomb = Call {
        handle_limit: 64,
        ..Call::run(opens(1_000_000), caps.clone())
    };
    let neighbour = Call::run(opens(100), caps.clone());
    let (bomb, neighbour) = tokio::join!(sb.invoke(&c, bomb), sb.invoke(&c, neighbour));
    let StepFailure::Trap(m) = bomb.unwrap_err() else {
        panic!("the bomb was not stopped by its limit")
    };
    assert!(
        m.starts_with(
            "the step held more than 64 host handles at once (open files, directories and streams)"
        ),
        "{m}"
    );
    assert!(m.contains("raise the step's `limits.handles`"), "{m}");
    assert_eq!(neighbour.unwrap().output["held"], 100);
    // The default bound is far below a process's file-descriptor limit.
    let err = sb
        .invoke(&c, Call::run(opens(1_000_000), caps))
        .await
        .unwrap_err();
    let StepFailure::Trap(m) = &err else {
        panic!("{err:?}")
    };
    assert!(m.contains("more than 256 host handles"), "{m}");
    assert_still_healthy().await;
}

/// Steps reserve their `limits.handles` from the runner's total before they start; a step
/// asking for more than the total is refused before it runs, naming both numbers.
#[tokio::test]
async fn a_handle_limit_above_the_runners_total_is_refused() {
    let c = load(meridian_artifacts::MISBEHAVE);
    let call = Call {
        handle_limit: 1_000_000,
        ..run(json!({"what": "exit"}))
    };
    let err = sandbox().invoke(&c, call).await.unwrap_err();
    let StepFailure::Grant(m) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        m,
        "`limits.handles` 1000000 is above the 16384 host handles this runner gives its steps in all"
    );
}
