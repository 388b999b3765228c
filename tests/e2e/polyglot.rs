//! Steps written in JavaScript and Python: the built-ins `notify-webhook` (JS) and `pg-canary`
//! (Python) through the binary in apply and plan mode with their grants given and withheld, the
//! checked-in components against a rebuild from source, and hostile JS and Python components
//! (built from source with the real toolchains) held by timeouts and memory limits.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::{Scratch, expect_code};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn tools() -> PathBuf {
    std::env::var_os("MERIDIAN_TOOLS_DIR")
        .map_or_else(|| repo().join(".meridian/tools"), PathBuf::from)
}

/// Builds a JS (`step.js`) or Python (`app.py`) step from `dir` with the SDK, once per source
/// digest (kept under the test target dir, so a second test run reuses it).
fn build(dir: &str) -> PathBuf {
    use sha2::Digest as _;
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let src = repo().join(dir);
    let js = src.join("step.js").exists();
    let (file, sdk) = if js {
        ("step.js", repo().join("sdk/js/meridian.js"))
    } else {
        ("app.py", repo().join("sdk/python/meridian_step.py"))
    };
    let mut h = sha2::Sha256::new();
    for p in [src.join(file), sdk.clone(), repo().join("sdk/wit/step.wit")] {
        h.update(std::fs::read(&p).unwrap());
    }
    let name = src.file_name().unwrap().to_string_lossy().into_owned();
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("polyglot");
    let out = out_dir.join(format!("{name}-{}.wasm", &hex::encode(h.finalize())[..16]));
    if out.exists() {
        return out;
    }
    let stage = tempfile::tempdir().unwrap();
    std::fs::copy(src.join(file), stage.path().join(file)).unwrap();
    std::fs::copy(&sdk, stage.path().join(sdk.file_name().unwrap())).unwrap();
    let built = stage.path().join("out.wasm");
    let mut cmd = if js {
        let mut c = Command::new("node");
        c.arg(repo().join("sdk/js/build.mjs"))
            .arg(stage.path().join(file))
            .arg(repo().join("sdk/wit"))
            .arg(&built)
            .env("MERIDIAN_TOOLS_DIR", tools());
        c
    } else {
        let mut c = Command::new(tools().join("py/bin/componentize-py"));
        c.arg("-d")
            .arg(repo().join("sdk/wit"))
            .args(["-w", "step", "componentize", "-p"])
            .arg(stage.path())
            .arg("app")
            .arg("-o")
            .arg(&built);
        c
    };
    let o = cmd.output().unwrap_or_else(|e| {
        panic!(
            "building {dir}: {e}; run scripts/install-deps (node, componentize-js, componentize-py)"
        )
    });
    assert!(
        o.status.success(),
        "building {dir}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::rename(&built, &out).unwrap();
    out
}

/// A loopback HTTP server that answers 200 `{"ok":true}` and keeps each request's body.
struct Hook {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hook {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (bodies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((conn, _)) = l.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let mut r = BufReader::new(conn);
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                b.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                let _ = r.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}",
                );
            }
        });
        Hook {
            port,
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn output(out: &str) -> serde_json::Value {
    let r: serde_json::Value = serde_json::from_str(out).unwrap();
    r["steps"][0]["legs"][0].clone()
}

#[test]
fn notify_webhook_in_javascript_apply_plan_and_denied() {
    let s = Scratch::new();
    let hook = Hook::start();
    let wf = |granted: &str| {
        format!(
            "name: notify\nsteps:\n  - id: tell\n    uses: notify-webhook\n    with:\n      url: http://127.0.0.1:{}/hook\n      format: slack\n      title: DR drill\n      text: failover done\n      fields: {{region: us}}\n    grants: {{http: [\"{granted}\"]}}\n",
            hook.port
        )
    };
    s.write("wf.yaml", &wf(&format!("http://127.0.0.1:{}", hook.port)));
    expect_code(&s.run(&["validate", "wf.yaml"]), 0);
    let (out, _) = expect_code(&s.run(&["--json", "run", "wf.yaml"]), 0);
    let leg = output(&out);
    assert_eq!(leg["output"]["status"], 200, "{leg}");
    assert_eq!(leg["output"]["recorded"], false);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1);
    let sent: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(sent["text"], "*DR drill*\nfailover done");
    assert_eq!(sent["attachments"][0]["fields"][0]["title"], "region");

    // Plan mode: the POST is recorded by the host, never sent.
    let (out, _) = expect_code(&s.run(&["--json", "plan", "wf.yaml"]), 0);
    assert_eq!(output(&out)["output"]["recorded"], true, "{out}");
    assert_eq!(hook.bodies().len(), 1, "plan mode sent nothing");
    // `runs show` of the plan lists its change, as `plan` did (it was in `--json` only).
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (shown, _) = expect_code(&s.run(&["runs", "show", &id]), 0);
    assert!(
        shown.contains("plan (changes that `meridian run` would make):")
            && shown.contains(&format!("  tell: POST http://127.0.0.1:{}/hook", hook.port)),
        "{shown}"
    );

    // Another origin granted: the host refuses the request; the step fails, naming why.
    // Marked optional, so validation lets the run reach the sandbox, which must refuse it.
    s.write(
        "denied.yaml",
        &wf("http://127.0.0.1:1").replace("grants: {", "grants: {optional: [http], "),
    );
    let (out, _) = expect_code(&s.run(&["--json", "run", "denied.yaml"]), 1);
    let leg = output(&out);
    assert!(
        leg["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not granted"),
        "{leg}"
    );
    assert_eq!(hook.bodies().len(), 1, "nothing reached the hook");
}

#[test]
fn pg_canary_in_python_apply_plan_and_denied() {
    use meridian_lab::{PgCluster, free_port};
    let s = Scratch::new();
    let pg = PgCluster::start_primary(&s.path().join("pg"), free_port()).expect("start PostgreSQL");
    let dsn = pg.dsn("postgres");
    let wf = |granted: &str| {
        format!(
            "name: canary\nconnections:\n  primary: {{postgres: \"{dsn}\"}}\n  other: {{postgres: \"{dsn}\"}}\nsteps:\n  - id: canary\n    uses: pg-canary\n    with: {{connection: primary, label: eu}}\n    grants: {{sql: [{granted}]}}\n"
        )
    };
    s.write("wf.yaml", &wf("primary"));
    expect_code(&s.run(&["validate", "wf.yaml"]), 0);
    // Plan first, on a database without the table: nothing is created.
    let (out, _) = expect_code(&s.run(&["--json", "plan", "wf.yaml"]), 0);
    let leg = output(&out);
    assert_eq!(leg["output"]["written"], false, "{leg}");
    assert_eq!(leg["output"]["verified"], false, "{leg}");
    let (out, _) = expect_code(&s.run(&["--json", "run", "wf.yaml"]), 0);
    let leg = output(&out);
    assert_eq!(leg["output"]["written"], true, "{leg}");
    assert_eq!(leg["output"]["verified"], true, "{leg}");
    assert!(leg["output"]["written_at"].is_string(), "{leg}");

    // Only `other` granted: the host refuses the connection the step asks for.
    // Marked optional, so validation lets the run reach the sandbox, which must refuse it.
    s.write(
        "denied.yaml",
        &wf("other").replace("grants: {", "grants: {optional: [sql], "),
    );
    let (out, _) = expect_code(&s.run(&["--json", "run", "denied.yaml"]), 1);
    let leg = output(&out);
    assert!(
        leg["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not granted"),
        "{leg}"
    );
    drop(pg);
}

/// Timeouts, memory limits and plan mode hold for a JS and a Python component as for Rust ones.
#[test]
fn hostile_javascript_and_python_steps_are_contained() {
    let s = Scratch::new();
    let hook = Hook::start();
    for dir in ["tests/guests/js-hostile", "tests/guests/py-hostile"] {
        let wasm = build(dir);
        let step = |id: &str, mode: &str, extra: &str| {
            format!(
                "  - id: {id}\n    uses: {}\n    with: {{mode: {mode}, url: \"http://127.0.0.1:{}/x\"}}\n    continue-on-error: true\n{extra}",
                wasm.display(),
                hook.port
            )
        };
        let grants = format!(
            "    grants: {{http: [\"http://127.0.0.1:{}\"]}}\n",
            hook.port
        );
        s.write(
            "wf.yaml",
            &format!(
                "name: hostile\nsteps:\n{}{}{}{}{}{}{}",
                // Only `post` calls out; the others are told the URL too, but never use it.
                step(
                    "spin",
                    "spin",
                    "    timeout: 2s\n    grants: {optional: [http]}\n"
                ),
                step(
                    "alloc",
                    "alloc",
                    "    limits: {memory: 48MiB}\n    grants: {optional: [http]}\n"
                ),
                step("post", "post", &grants),
                step("throw", "throw", "    grants: {optional: [http]}\n"),
                step("fine", "ok", "    grants: {optional: [http]}\n"),
                // An async `run` was answered `{}` and its work never done; an output JSON
                // cannot hold trapped. Both fail the step with why.
                step("async", "async", "    grants: {optional: [http]}\n"),
                step("bigint", "bigint", "    grants: {optional: [http]}\n"),
            ),
        );
        let started = std::time::Instant::now();
        let (out, _) = expect_code(&s.run(&["--json", "run", "wf.yaml"]), 0);
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        let leg = |id: &str| {
            r["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["id"] == id)
                .unwrap()["legs"][0]
                .clone()
        };
        let err = |id: &str| {
            leg(id)["error"]["message"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        };
        assert_eq!(
            leg("spin")["error"]["kind"],
            "timeout",
            "{dir}: {}",
            leg("spin")
        );
        // The cap held: the host refused to grow memory (wasmtime's out-of-memory failure, or
        // the interpreter's own MemoryError when it sees the refused grow), and the run went on.
        assert!(
            err("alloc").to_lowercase().contains("memory"),
            "{dir}: {}",
            leg("alloc")
        );
        assert!(
            err("throw").contains("a bug in the step"),
            "{dir}: {}",
            leg("throw")
        );
        assert_eq!(
            leg("post")["output"]["status"],
            200,
            "{dir}: {}",
            leg("post")
        );
        assert_eq!(leg("fine")["output"]["ok"], true, "{dir}: {}", leg("fine"));
        assert!(
            err("async").contains("write it as a plain"),
            "{dir}: {}",
            leg("async")
        );
        assert!(
            err("bigint").contains("cannot be written as JSON"),
            "{dir}: {}",
            leg("bigint")
        );
        assert!(
            started.elapsed().as_secs() < 120,
            "{dir}: took {:?}",
            started.elapsed()
        );
        let before = hook.bodies().len();
        let (out, _) = expect_code(&s.run(&["--json", "plan", "wf.yaml"]), 0);
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        let post = r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == "post")
            .unwrap();
        assert_eq!(post["legs"][0]["output"]["status"], 202, "{dir}: {post}");
        assert_eq!(hook.bodies().len(), before, "{dir}: plan mode sent nothing");
    }
}

/// The checked-in components are what their sources build to: rebuilt from source with the real
/// toolchains, each declares the same manifest (the builds are not byte-reproducible).
#[test]
fn checked_in_components_match_a_rebuild_from_source() {
    let s = Scratch::new();
    let out = s.path().join("rebuilt");
    let o = Command::new(repo().join("scripts/build-polyglot-steps"))
        .arg(&out)
        .env("MERIDIAN_TOOLS_DIR", tools())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["notify-webhook", "pg-canary"] {
        let shipped = repo().join(format!("steps/{name}/component.wasm"));
        let digest =
            std::fs::read_to_string(repo().join(format!("steps/{name}/component.wasm.sha256")))
                .unwrap();
        assert_eq!(
            digest.trim(),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                std::fs::read(&shipped).unwrap()
            ))
        );
        let manifest = |step: &str| {
            let (out, _) = expect_code(&s.run(&["--json", "steps", "show", step]), 0);
            let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
            v.as_object_mut().unwrap().remove("origin");
            v
        };
        let rebuilt = out.join(format!("{name}.wasm"));
        assert_eq!(
            manifest(name),
            manifest(rebuilt.to_str().unwrap()),
            "{name}"
        );
    }
}

/// `meridian new step NAME --lang js|python` makes a project that builds as is (with the
/// toolchains scripts/install-deps installs) and whose example workflow runs.
#[test]
fn scaffolded_javascript_and_python_steps_build_and_run() {
    let s = Scratch::new();
    for (lang, name) in [("js", "js-greet"), ("python", "py-greet")] {
        let (out, _) = expect_code(&s.run(&["new", "step", name, "--lang", lang]), 0);
        assert!(out.contains("workflow.yaml"), "{out}");
        let dir = s.path().join(name);
        // Its own unit tests pass against the SDK's mock host, before anything is built.
        let mut unit = if lang == "js" {
            let mut c = Command::new("node");
            c.arg("--test");
            c
        } else {
            let mut c = Command::new("python3");
            c.args(["-m", "unittest", "-v"]);
            c
        };
        let o = unit.current_dir(&dir).output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{lang} unit tests: {said}");
        let passed = if lang == "js" {
            "# pass 3"
        } else {
            "Ran 3 tests"
        };
        assert!(said.contains(passed), "{lang}: {said}");
        if lang == "js" {
            // console.log and console.error are the step's log lines, as print is in Python
            // (the scaffold left componentize-js's stdio out, and they went nowhere).
            let step = dir.join("step.js");
            let text = std::fs::read_to_string(&step).unwrap();
            assert!(text.contains("ctx.log.info('running'"), "{text}");
            std::fs::write(
                &step,
                text.replace(
                    "ctx.log.info('running'",
                    "console.log('said by console.log'); console.error('said by console.error'); ctx.log.info('running'",
                ),
            )
            .unwrap();
        }
        let mut build = if lang == "js" {
            // What `npm run build` runs, with componentize-js from the tools dir instead of an
            // `npm install` per test.
            let mut c = Command::new("node");
            c.arg("build.mjs").arg(format!("{name}.wasm"));
            c
        } else {
            Command::new("./build.sh")
        };
        let path = format!(
            "{}:{}",
            tools().join("py/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let o = build
            .current_dir(&dir)
            .env("MERIDIAN_TOOLS_DIR", tools())
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{lang}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let wf = dir.join("workflow.yaml");
        let (out, _) = expect_code(&s.run(&["--json", "run", wf.to_str().unwrap()]), 0);
        assert_eq!(
            output(&out)["output"]["message"],
            "hello, Ada",
            "{lang}: {out}"
        );
        if lang == "js" {
            let run: serde_json::Value = serde_json::from_str(&out).unwrap();
            let id = run["run_id"].as_str().unwrap();
            let (shown, _) = expect_code(&s.run(&["runs", "show", id]), 0);
            assert!(
                shown.contains("info: said by console.log")
                    && shown.contains("warn: said by console.error"),
                "{shown}"
            );
        }
        // Its declared schema is read, and `with:` is checked against it before anything runs.
        let wasm = dir.join(format!("{name}.wasm"));
        let (show, _) = expect_code(&s.run(&["steps", "show", wasm.to_str().unwrap()]), 0);
        assert!(show.contains("Who to greet."), "{show}");
        let bad = s.write(
            &format!("{name}-bad.yaml"),
            &format!(
                "name: bad\nsteps:\n  - id: g\n    uses: {}\n    with: {{nmae: Ada}}\n",
                wasm.display()
            ),
        );
        expect_code(&s.run(&["validate", bad.to_str().unwrap()]), 2);
    }
}
