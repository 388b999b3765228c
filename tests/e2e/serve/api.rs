//! The API with roles and approvals, idempotent starts, the event stream, signed webhooks,
//! and the CLI against a server.

use super::*;

#[test]
fn the_api_starts_streams_and_an_approver_approves() {
    let s = Scratch::new();
    let rt = rt();
    // The workflow's own webhook, for its successes only, besides the server's.
    let (own_hook, own_calls) = rt.block_on(receiver());
    s.write(
        "wf/gated.yaml",
        &format!("{GATED}notify:\n  - {{url: \"{own_hook}\", events: [run.succeeded]}}\n"),
    );
    s.write(
        "tokens.toml",
        &format!(
            "[[token]]\nname = \"vic\"\nsha256 = \"{}\"\n\n[[token]]\nname = \"olga\"\nroles = [\"operator\"]\nsha256 = \"{}\"\n\n[[token]]\nname = \"alice\"\nroles = [\"approver\"]\nsha256 = \"{}\"\n",
            sha("viewer-token"),
            sha("operator-token"),
            sha("approver-token")
        ),
    );
    let (hook, calls) = rt.block_on(receiver());
    s.write(
        "meridian.toml",
        &format!(
            "workflows = \"wf\"\ntokens = \"tokens.toml\"\n\n[[notify]]\nurl = \"{hook}\"\nsecret-env = \"HOOK_KEY\"\n"
        ),
    );
    // The HMAC key comes from the server's environment.
    let mut cmd = s.cmd();
    cmd.env("HOOK_KEY", "k3y");
    let served = Served::spawn(cmd, &["--config", "meridian.toml"]);
    rt.block_on(async {
        let (code, body) = call("GET", &served.url("/api/v1/runs"), None, None).await;
        assert_eq!(code, 401, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Bearer")
        );
        let (code, _) = call("GET", &served.url("/api/v1/runs"), Some("nope"), None).await;
        assert_eq!(code, 401);
        // The scheme's case does not matter (RFC 9110).
        let (code, body) = call_with(
            "GET",
            &served.url("/api/v1/runs"),
            None,
            None,
            &[("Authorization", "bearer viewer-token")],
        )
        .await;
        assert_eq!(code, 200, "{body}");

        // A viewer cannot start a run.
        let start = json!({"workflow": "gated"});
        let (code, body) = call(
            "POST",
            &served.url("/api/v1/runs"),
            Some("viewer-token"),
            Some(start.clone()),
        )
        .await;
        assert_eq!(code, 403, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("operator")
        );

        // The same Idempotency-Key twice starts one run.
        let key = [("Idempotency-Key", "deploy-42")];
        let (code, first) = call_with(
            "POST",
            &served.url("/api/v1/runs"),
            Some("operator-token"),
            Some(start.clone()),
            &key,
        )
        .await;
        assert_eq!(code, 202, "{first}");
        let (code, second) = call_with(
            "POST",
            &served.url("/api/v1/runs"),
            Some("operator-token"),
            Some(start),
            &key,
        )
        .await;
        assert_eq!(code, 202);
        assert_eq!(first["id"], second["id"]);
        let id = first["id"].as_str().unwrap().to_string();
        // The key again with other inputs is another request: refused, not answered with the
        // first run (a corrected retry used to get the old run back, silently).
        let (code, other) = call_with(
            "POST",
            &served.url("/api/v1/runs"),
            Some("operator-token"),
            Some(json!({"workflow": "gated", "inputs": {"region": "ap"}})),
            &key,
        )
        .await;
        assert_eq!(code, 422, "{other}");
        assert!(
            other["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!(
                    "started run {id} of `gated` (apply) with other inputs"
                )),
            "{other}"
        );

        let run_url = served.url(&format!("/api/v1/runs/{id}"));
        let run = until(
            &run_url,
            Some("viewer-token"),
            Duration::from_secs(60),
            |b| b["summary"]["status"] == "awaiting-approval",
        )
        .await;
        assert_eq!(run["waiting_for_approval"], json!(["promote"]));
        let (_, list) = call(
            "GET",
            &served.url("/api/v1/runs?workflow=gated"),
            Some("viewer-token"),
            None,
        )
        .await;
        assert_eq!(list["total"], 1, "{list}");

        // Only an approver approves; the gate must be the one waiting.
        let approve = json!({"decision": "approve", "comment": "go"});
        let gate = served.url(&format!("/api/v1/runs/{id}/approvals/promote"));
        let (code, _) = call("POST", &gate, Some("viewer-token"), Some(approve.clone())).await;
        assert_eq!(code, 403);
        let (code, _) = call("POST", &gate, Some("operator-token"), Some(approve.clone())).await;
        assert_eq!(code, 403);
        let wrong = served.url(&format!("/api/v1/runs/{id}/approvals/before"));
        let (code, body) = call(
            "POST",
            &wrong,
            Some("approver-token"),
            Some(approve.clone()),
        )
        .await;
        assert_eq!(code, 409, "{body}");
        // A step the workflow does not have: not there (it was a 409 like a step not waiting).
        let nosuch = served.url(&format!("/api/v1/runs/{id}/approvals/promte"));
        let (code, body) = call(
            "POST",
            &nosuch,
            Some("approver-token"),
            Some(approve.clone()),
        )
        .await;
        assert_eq!(code, 404, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("has no step `promte`; it waits at: promote"),
            "{body}"
        );
        let (code, body) = call("POST", &gate, Some("approver-token"), Some(approve)).await;
        assert_eq!(code, 202, "{body}");

        // The stream replays the journal and ends with the run.
        let stream = reqwest::Client::new()
            .get(served.url(&format!("/api/v1/runs/{id}/stream")))
            .bearer_auth("viewer-token")
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(stream.contains("event: approval-granted"), "{stream}");
        assert!(stream.contains("event: end\ndata: succeeded"), "{stream}");

        let (_, run) = call("GET", &run_url, Some("viewer-token"), None).await;
        assert_eq!(run["summary"]["status"], "succeeded");

        // Webhooks: each notification once, signed with the key.
        let start = Instant::now();
        loop {
            let kinds: Vec<String> = calls
                .lock()
                .unwrap()
                .iter()
                .map(|(_, b)| {
                    serde_json::from_str::<Json>(b).unwrap()["kind"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            if kinds.contains(&"run.succeeded".to_string()) {
                let mut sorted = kinds.clone();
                sorted.sort();
                assert_eq!(
                    sorted,
                    ["run.awaiting-approval", "run.started", "run.succeeded"],
                    "{kinds:?}"
                );
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "webhooks: {kinds:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Deliveries go out on their own tasks: wait for the workflow's hook too.
        let start = Instant::now();
        while own_calls.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let own: Vec<String> = own_calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect();
        assert_eq!(own.len(), 1, "{own:?}");
        assert!(own[0].contains("\"kind\":\"run.succeeded\""), "{own:?}");
        for (headers, body) in calls.lock().unwrap().iter() {
            let sig = headers
                .iter()
                .find(|(k, _)| k == "x-meridian-signature")
                .map(|(_, v)| v.clone());
            assert_eq!(
                sig,
                Some(meridian_server::notify::signature(b"k3y", body.as_bytes()))
            );
        }
    });
    // The approval is journaled with who gave it; the CLI reads the served run.
    let (list, _) = crate::support::expect_code(&s.run(&["--json", "runs", "list"]), 0);
    let id = serde_json::from_str::<Json>(&list).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (out, _) = crate::support::expect_code(&s.run(&["runs", "show", &id]), 0);
    assert!(out.contains("promote: approved (alice: go)"), "{out}");
    drop(served);
}

/// `--server URL`: an operator lists, shows, triggers and approves from another machine.
#[test]
fn the_cli_talks_to_a_server() {
    let s = Scratch::new();
    // A schedule that does not fire during the test: only `trigger` starts runs.
    s.write(
        "wf/gated.yaml",
        &GATED.replace(
            "name: gated\n",
            "name: gated\non:\n  schedule:\n    - cron: \"0 0 1 1 *\"\n",
        ),
    );
    s.write(
        "tokens.toml",
        &format!(
            "[[token]]\nname = \"olga\"\nroles = [\"operator\"]\nsha256 = \"{}\"\n\n[[token]]\nname = \"alice\"\nroles = [\"approver\"]\nsha256 = \"{}\"\n",
            sha("operator-token"),
            sha("approver-token")
        ),
    );
    let served = Served::start(&s, &["--workflows", "wf", "--tokens", "tokens.toml"]);
    // Another "machine": a fresh state dir that holds nothing.
    let remote = |token: &str, args: &[&str]| {
        s.cmd()
            .env("MERIDIAN_STATE_DIR", s.path().join("laptop"))
            .env("MERIDIAN_SERVER", &served.base)
            .env("MERIDIAN_TOKEN", token)
            .args(args)
            .output()
            .unwrap()
    };
    let (out, _) =
        crate::support::expect_code(&remote("operator-token", &["trigger", "gated#0"]), 0);
    assert!(
        out.contains("fired schedule gated#0: started run r"),
        "{out}"
    );

    let start = Instant::now();
    let id = loop {
        let (out, _) =
            crate::support::expect_code(&remote("operator-token", &["--json", "runs", "list"]), 0);
        let runs: Json = serde_json::from_str(&out).unwrap();
        if runs[0]["status"] == "awaiting-approval" {
            break runs[0]["id"].as_str().unwrap().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{out}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Fired again while that run waits at its gate (still going, for `overlap: skip`): skipped,
    // and said so (it started a second run beside the waiting one).
    let (out, _) =
        crate::support::expect_code(&remote("operator-token", &["trigger", "gated#0"]), 1);
    assert!(
        out.contains("schedule gated#0 started no run: tick skipped"),
        "{out}"
    );
    // The operator may not approve; the server's reason is shown.
    let (_, err) =
        crate::support::expect_code(&remote("operator-token", &["approve", &id, "promote"]), 1);
    assert!(err.contains("403") && err.contains("approver"), "{err}");
    let (out, _) = crate::support::expect_code(
        &remote(
            "approver-token",
            &["approve", &id, "promote", "--comment", "window open"],
        ),
        0,
    );
    assert!(out.contains("approved step `promote`"), "{out}");
    let start = Instant::now();
    loop {
        let (out, _) =
            crate::support::expect_code(&remote("approver-token", &["runs", "show", &id]), 0);
        if out.contains("status:   succeeded") {
            assert!(
                out.contains("promote: approved (alice: window open)"),
                "{out}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without --server, approve says what to type instead.
    let (_, err) = crate::support::expect_code(&s.run(&["approve", &id, "promote"]), 2);
    assert!(err.contains("--server") && err.contains("resume"), "{err}");
}

#[test]
fn without_tokens_it_refuses_to_listen_beyond_loopback() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("wf")).unwrap();
    let o = s.run(&["serve", "--workflows", "wf", "--listen", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("without a tokens file"), "{err}");
}

/// Regression: without a tokens file any web page could drive the server through the visitor's
/// browser — a cross-site POST (no CORS preflight for a body-less request) triggered and paused
/// schedules, and DNS rebinding (`Host: evil.example`) read the API. Both are refused now; the
/// CLI, curl and the server's own pages are not.
#[test]
fn without_tokens_a_web_page_elsewhere_cannot_use_the_server() {
    let s = Scratch::new();
    s.write(
        "wf/tick.yaml",
        "name: tick
on:\n  schedule:\n    - cron: \"0 0 1 1 *\"\nsteps:\n  - {id: a, uses: hello}\n",
    );
    let served = Served::start(&s, &["--workflows", "wf"]);
    let rt = rt();
    rt.block_on(async {
        let trigger = served.url("/api/v1/schedules/tick%230/trigger");
        let own = served.url("");
        let own = own.trim_end_matches('/');
        for (headers, why) in [
            (
                vec![("Origin", "http://evil.example")],
                "from a web page of `http://evil.example`",
            ),
            (vec![("Sec-Fetch-Site", "cross-site")], "cross-site"),
            (vec![("Host", "evil.example")], "is not a loopback address"),
        ] {
            let (code, err) = call_with("POST", &trigger, None, None, &headers).await;
            assert_eq!(code, 403, "{headers:?}: {err}");
            assert!(
                err["error"]["message"].as_str().unwrap().contains(why),
                "{err}"
            );
        }
        let (code, err) = call_with(
            "GET",
            &served.url("/api/v1/runs"),
            None,
            None,
            &[("Host", "rebound.example:80")],
        )
        .await;
        assert_eq!(code, 403, "{err}");
        let (_, runs) = call("GET", &served.url("/api/v1/runs"), None, None).await;
        assert_eq!(runs["total"], 0, "nothing ran: {runs}");
        // The server's own page (same origin), and a client that is no browser.
        let (code, body) = call_with("POST", &trigger, None, None, &[("Origin", own)]).await;
        assert_eq!(code, 202, "{body}");
        let (code, body) = call("GET", &served.url("/api/v1/runs"), None, None).await;
        assert_eq!(code, 200, "{body}");
    });
}

/// Regression: a reload put in service what `meridian validate` refuses — a `with:` that does
/// not fit its component's schema, a `uses:` that names no step — and reported it valid; every
/// run of it then failed. The server checks components as `validate` does now: the edit is
/// refused with the same diagnostics, and the previous version serves on.
#[test]
fn a_reload_refuses_what_validate_refuses_and_keeps_the_previous_version() {
    let s = Scratch::new();
    let good = "name: greet\nsteps:\n  - id: a\n    uses: hello\n    with: {name: cron}\n";
    s.write("wf/greet.yaml", good);
    s.write(
        "meridian.toml",
        "workflows = \"wf\"\nreload-interval = \"100ms\"\n\n[[schedule]]\nworkflow = \"greet\"\ncron = \"0 0 1 1 *\"\n",
    );
    let served = Served::start(&s, &["--config", "meridian.toml"]);
    let rt = rt();
    rt.block_on(async {
        s.write("wf/greet.yaml", &good.replace("name: cron", "nam: cron"));
        s.write(
            "wf/nope.yaml",
            "name: nope\nsteps:\n  - {id: a, uses: nope-step}\n",
        );
        let info = |all: &Json, file: &str| {
            all["workflows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["file"].as_str().unwrap().ends_with(file))
                .cloned()
                .unwrap_or(Json::Null)
        };
        let all = until(
            &served.url("/api/v1/workflows"),
            None,
            Duration::from_secs(20),
            |b| info(b, "greet.yaml")["valid"] == false && info(b, "nope.yaml")["valid"] == false,
        )
        .await;
        let greet = info(&all, "greet.yaml");
        // The server config's schedule counts (the file has none of its own).
        assert_eq!(greet["schedules"], 1, "{greet}");
        let err = greet["error"].as_str().unwrap();
        assert!(
            err.contains("greet.yaml:5:") && err.contains("nam"),
            "{err}"
        );
        assert_eq!(
            greet["name"], "greet",
            "the previous version is in service: {greet}"
        );
        let err = info(&all, "nope.yaml")["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(err.contains("cannot load step `nope-step`"), "{err}");
        // The previous version runs; the refused file is not a workflow to start.
        let (code, run) = call(
            "POST",
            &served.url("/api/v1/runs"),
            None,
            Some(json!({"workflow": "greet"})),
        )
        .await;
        assert_eq!(code, 202, "{run}");
        let id = run["id"].as_str().unwrap().to_string();
        let done = until(
            &served.url(&format!("/api/v1/runs/{id}")),
            None,
            Duration::from_secs(30),
            |b| b["summary"]["status"] != "running",
        )
        .await;
        assert_eq!(done["summary"]["status"], "succeeded", "{done}");
        let (code, body) = call(
            "POST",
            &served.url("/api/v1/runs"),
            None,
            Some(json!({"workflow": "nope"})),
        )
        .await;
        assert!(code == 404 || code == 400, "{code}: {body}");
    });
}

/// Regression: the router's own answers had no body or a text one (an unknown route, a wrong
/// method, a query that does not parse), while the API promises `{"error": {…}}` for every error.
#[test]
fn every_error_has_the_apis_json_shape() {
    let s = Scratch::new();
    s.write(
        "wf/named.yaml",
        "name: named\ninputs:\n  region: {type: string}\nsteps:\n  - id: a\n    uses: hello\n    with: {name: \"${{ inputs.region }}\"}\n",
    );
    let served = Served::start(&s, &["--workflows", "wf"]);
    let rt = rt();
    rt.block_on(async {
        // An object for a string input: refused, not run with its JSON text as the value.
        let start = json!({"workflow": "named", "inputs": {"region": {"name": "eu"}}});
        let (code, body) = call("POST", &served.url("/api/v1/runs"), None, Some(start)).await;
        assert_eq!(code, 400, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("input `region` is a string; an object was given"),
            "{body}"
        );
        for (method, path, status, says) in [
            ("GET", "/api/v1/nope", 404, "no route GET /api/v1/nope"),
            ("DELETE", "/api/v1/runs", 405, "does not take that method"),
            ("GET", "/api/v1/runs?limit=abc", 400, "limit"),
            // Zero answered one run.
            ("GET", "/api/v1/runs?limit=0", 400, "limit: give 1 to 500"),
            ("GET", "/api/v1/drills?limit=0", 400, "limit: give 1 to 500"),
            ("GET", "/api/v1/runs/x/events?after=x", 400, "after"),
            // An unknown run's events are not an empty list.
            ("GET", "/api/v1/runs/rnope/events", 404, "rnope"),
            // A misspelt filter used to be ignored: every run came back.
            (
                "GET",
                "/api/v1/runs?state=failed",
                400,
                "unknown field `state`",
            ),
        ] {
            let (code, body) = call(method, &served.url(path), None, None).await;
            assert_eq!(code, status, "{method} {path}: {body}");
            assert_eq!(body["error"]["status"], status, "{method} {path}: {body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{method} {path}: {body}");
        }
        // An address outside the API is the console's error page (it was plain text).
        let r = reqwest::get(served.url("/nosuch")).await.unwrap();
        assert_eq!(r.status(), 404);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let page = r.text().await.unwrap();
        assert!(page.contains("There is no page at /nosuch"), "{page}");
        // A JSON body sent without saying so: 415, naming the header (it was a 400).
        let r = reqwest::Client::new()
            .post(served.url("/api/v1/runs"))
            .body(r#"{"workflow": "x"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("Content-Type: application/json"),
            "{body}"
        );
        // A body over the limit is 413 and says the limit (it was a 400 "Failed to buffer").
        let big = json!({"workflow": "x", "inputs": {"blob": "a".repeat(1_500_000)}});
        let (code, body) = call("POST", &served.url("/api/v1/runs"), None, Some(big)).await;
        assert_eq!(code, 413, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("over the limit of 1 MiB"),
            "{body}"
        );
    });
}

/// Every route the OpenAPI document lists (`ROUTES`, which a unit test holds equal to the
/// document) is served: no 405, and a 404 only as the API's own JSON answer about an unknown
/// run or schedule, never the router's "no such route".
#[test]
fn every_documented_route_is_served() {
    let s = Scratch::new();
    s.write("wf/gated.yaml", GATED);
    let served = Served::start(&s, &["--workflows", "wf"]);
    rt().block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        for (method, path) in meridian_server::api::ROUTES {
            let url = served.url(&path.replace("{id}", "nope").replace("{step}", "nope"));
            let r = client
                .request(method.to_uppercase().parse().unwrap(), &url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}");
            if status == 404 {
                let v: Json = serde_json::from_str(&body)
                    .unwrap_or_else(|_| panic!("{method} {path}: the router's 404: {body:?}"));
                assert!(v["error"]["message"].is_string(), "{method} {path}: {body}");
            }
        }
    });
}

/// A gate nobody answers within its `approval.timeout` is rejected by the server, and the run
/// takes its failure path; the timeout used to apply only to a terminal prompt, and a run
/// started through the API waited forever (with, in a failover, the old primary fenced).
#[test]
fn an_unanswered_gate_times_out_into_the_failure_path() {
    let s = Scratch::new();
    s.write(
        "wf/timed.yaml",
        r#"
name: timed
steps:
  - id: before
    uses: hello
  - id: promote
    uses: hello
    needs: before
    approval: {message: "promote?", timeout: 1s}
  - id: unfence
    uses: hello
    needs: promote
    if: failure()
"#,
    );
    let served = Served::start(&s, &["--workflows", "wf"]);
    rt().block_on(async {
        let (code, body) = call(
            "POST",
            &served.url("/api/v1/runs"),
            None,
            Some(json!({"workflow": "timed"})),
        )
        .await;
        assert_eq!(code, 202, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        until(
            &served.url(&format!("/api/v1/runs/{id}")),
            None,
            Duration::from_secs(30),
            |b| b["summary"]["status"] == "failed",
        )
        .await;
        let (_, events) = call(
            "GET",
            &served.url(&format!("/api/v1/runs/{id}/events")),
            None,
            None,
        )
        .await;
        let text = events.to_string();
        assert!(
            text.contains("\"by\":\"timeout\"") && text.contains("nobody answered within 1s"),
            "{text}"
        );
        assert!(text.contains("\"step\":\"unfence\""), "{text}");
    });
    assert!(
        served.log().contains("approval timed out"),
        "{}",
        served.log()
    );
}
