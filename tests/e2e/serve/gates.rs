//! Runs at their approval gates through the API: a cancel (with or without a reason) that
//! compensates what completed, a pause's reason, and a gated drill's figures on the console.

use super::*;

/// A pause and a cancel may say why (`{"reason": "..."}`): shown in the schedule's `paused` and
/// the run's message. A reason that is not one line of text, or a body that is not that JSON,
/// is refused and changes nothing.
#[test]
fn a_pause_and_a_cancel_say_why() {
    let s = Scratch::new();
    s.write(
        "wf/gated.yaml",
        "name: gated\non:\n  schedule:\n    - cron: \"0 0 1 1 *\"\nsteps:\n  - id: a\n    uses: hello\n    approval: {message: \"go?\"}\n",
    );
    let hooks = rt();
    let (hook, calls) = hooks.block_on(receiver());
    s.write(
        "serve.toml",
        &format!(
            "workflows = \"wf\"\n\n[[notify]]\nurl = \"{hook}\"\nevents = [\"run.cancelled\"]\n"
        ),
    );
    let served = Served::start(&s, &["--config", "serve.toml"]);
    let id = start(&served, "gated");
    let raw = |url: String, content_type: &str, body: &str| {
        let (content_type, body) = (content_type.to_string(), body.to_string());
        rt().block_on(async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    rt().block_on(async {
        let run_url = served.url(&format!("/api/v1/runs/{id}"));
        until_status(&run_url, "awaiting-approval").await;
    });
    let cancel = served.url(&format!("/api/v1/runs/{id}/cancel"));
    for (content_type, body, code) in [
        ("text/plain", "wrong inputs", 415),
        (
            "application/json",
            r#"{"reason": "wrong\u001b[31m inputs"}"#,
            400,
        ),
        ("application/json", r#"{"reason": "  "}"#, 400),
        ("application/json", r#"{"why": "wrong inputs"}"#, 400),
        ("application/json", "wrong inputs", 400),
    ] {
        let (got, text) = raw(cancel.clone(), content_type, body);
        assert_eq!(got, code, "{body}: {text}");
        assert!(text.contains("reason"), "says what to send: {text}");
    }
    let (code, ended) = raw(
        cancel,
        "application/json",
        r#"{"reason": "wrong inputs: region us is down"}"#,
    );
    assert_eq!(code, 200, "{ended}");
    let ended: Json = serde_json::from_str(&ended).unwrap();
    assert_eq!(ended["status"], "cancelled", "{ended}");
    assert!(
        ended["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cancelled through the API by `local`: wrong inputs: region us is down"),
        "{ended}"
    );
    // The cancel is told, once, with who and why (it sent nothing).
    let note = hooks.block_on(async {
        let start = Instant::now();
        loop {
            if let Some((_, body)) = calls.lock().unwrap().first() {
                break serde_json::from_str::<Json>(body).unwrap();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no run.cancelled webhook"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert_eq!(
        (&note["kind"], &note["run_id"]),
        (&json!("run.cancelled"), &json!(id)),
        "{note}"
    );
    assert!(
        note["message"]
            .as_str()
            .unwrap_or_default()
            .contains("wrong inputs: region us is down"),
        "{note}"
    );

    let pause = served.url("/api/v1/schedules/gated%230/pause");
    let (code, text) = raw(pause.clone(), "application/json", r#"{"reason": ""}"#);
    assert_eq!(code, 400, "{text}");
    let (code, text) = raw(
        pause,
        "application/json; charset=utf-8",
        r#"{"reason": "maintenance until Monday"}"#,
    );
    assert_eq!(code, 200, "{text}");
    let paused: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(
        paused["paused"], "paused by local: maintenance until Monday",
        "{paused}"
    );
    // No body: a pause without a reason, as before.
    let (code, body) = rt().block_on(async {
        let url = served.url("/api/v1/schedules/gated%230/resume");
        call("POST", &url, None, None).await
    });
    assert_eq!((code, &body["paused"]), (200, &Json::Null), "{body}");
    let (code, body) = rt().block_on(async {
        let url = served.url("/api/v1/schedules/gated%230/pause");
        call("POST", &url, None, None).await
    });
    assert_eq!(
        (code, &body["paused"]),
        (200, &json!("paused by local")),
        "{body}"
    );
}

/// A run cancelled at its approval gate is compensated: the steps that finished before the
/// gate are undone, nothing else runs, and the run ends `cancelled`. A cancel used to end the
/// run where it stood: a failover cancelled at its gate left the primary fenced, unnoticed.
#[test]
fn a_run_cancelled_at_its_gate_is_compensated() {
    let s = Scratch::new();
    s.write(
        "wf/fenced.yaml",
        r#"
name: fenced
steps:
  - id: fence
    uses: hello
    with: {name: fence}
    compensate:
      uses: hello
      with: {name: unfence}
  - id: promote
    uses: hello
    needs: fence
    approval: {message: "promote?"}
"#,
    );
    let served = Served::start(&s, &["--workflows", "wf"]);
    let id = start(&served, "fenced");
    rt().block_on(async {
        let run_url = served.url(&format!("/api/v1/runs/{id}"));
        until_status(&run_url, "awaiting-approval").await;
        let cancel = served.url(&format!("/api/v1/runs/{id}/cancel"));
        // Through the CLI (it had no `cancel`: the API alone could).
        let out = s.run(&[
            "--server",
            &served.base,
            "cancel",
            &id,
            "--reason",
            "wrong region",
        ]);
        let (stdout, _) = crate::support::expect_code(&out, 0);
        assert!(
            stdout.starts_with(&format!("run {id} cancelled: "))
                && stdout.contains("cancelled through the API by `local`: wrong region"),
            "{stdout}"
        );
        let (_, local) = crate::support::expect_code(&s.run(&["cancel", &id]), 2);
        assert!(
            local.contains("Ctrl-C") && local.contains("--reject STEP"),
            "{local}"
        );
        let (_, events) = call("GET", &format!("{run_url}/events"), None, None).await;
        let text = events.to_string();
        assert!(
            text.contains("\"event\":\"compensation\"")
                && text.contains("\"step\":\"fence\"")
                && text.contains("\"outcome\":\"success\""),
            "the fence was not undone: {text}"
        );
        let (_, run) = call("GET", &run_url, None, None).await;
        let legs = run["legs"].as_array().cloned().unwrap_or_default();
        assert!(
            legs.iter().any(|l| l["step"] == "fence")
                && !legs.iter().any(|l| l["step"] == "promote"),
            "the gated step ran, or the fence is not there: {run}"
        );
        // Ended: a second cancel is refused.
        let (code, body) = call("POST", &cancel, None, None).await;
        assert_eq!(code, 409, "{body}");
    });
}

/// The console's run page shows a gated drill's "Approval wait" beside its other figures, as
/// the API, `runs show` and the exported page do (it read no events for a drill without
/// canaries, so the wait was missing there alone).
#[test]
fn the_console_run_page_shows_a_drills_approval_wait() {
    let s = Scratch::new();
    s.write(
        "wf/gatedrill.yaml",
        "name: gatedrill\ndrill: {rto: 60s}\nsteps:\n  - {id: promote, uses: hello, approval: true}\n  - id: report\n    uses: drill-report\n    needs: promote\n    with:\n      fault_at_ms: ${{ run.started_at_ms }}\n      recovered_at_ms: ${{ run.started_at_ms }}\n      rto_target_ms: 60000\n",
    );
    let served = Served::start(&s, &["--workflows", "wf"]);
    let id = start(&served, "gatedrill");
    let run_url = served.url(&format!("/api/v1/runs/{id}"));
    let page = rt().block_on(async {
        until_status(&run_url, "awaiting-approval").await;
        let gate = served.url(&format!("/api/v1/runs/{id}/approvals/promote"));
        let (code, body) = call("POST", &gate, None, Some(json!({"decision": "approve"}))).await;
        assert!(code == 200 || code == 202, "{code} {body}");
        let run = until_status(&run_url, "succeeded").await;
        let figures = run["drill"]["figures"].to_string();
        assert!(figures.contains("Approval wait"), "{run}");
        reqwest::get(served.url(&format!("/runs/{id}")))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(page.contains("Approval wait"), "{page}");

    // A second run, cancelled at its gate by an operator: no drill result, not counted (it
    // counted as an incomplete drill in the pass rate).
    let second = start(&served, "gatedrill");
    rt().block_on(async {
        let url = served.url(&format!("/api/v1/runs/{second}"));
        until_status(&url, "awaiting-approval").await;
        // One drill at a time: a third while the second waits at its gate is refused.
        let (code, body) = call(
            "POST",
            &served.url("/api/v1/runs"),
            None,
            Some(json!({"workflow": "gatedrill"})),
        )
        .await;
        assert_eq!(code, 409, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("run {second} of `gatedrill` is drilling now")),
            "{body}"
        );
        let cancel = served.url(&format!("/api/v1/runs/{second}/cancel"));
        let (code, body) = call("POST", &cancel, None, None).await;
        assert_eq!(code, 200, "{body}");
        let (_, drills) = call(
            "GET",
            &served.url("/api/v1/drills?workflow=gatedrill"),
            None,
            None,
        )
        .await;
        let listed: Vec<&str> = drills["drills"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["run"].as_str())
            .collect();
        assert_eq!(listed, [id.as_str()], "{drills}");
    });
}
