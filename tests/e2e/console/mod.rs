//! The web console in a real browser (headless Chromium over WebDriver): sign in, approve a
//! gate and watch the run go on without a reload; a viewer gets no Approve button and a
//! forged POST changes nothing; the drills page charts every drill. Screenshots of each page
//! go to `target/tmp/console-screenshots/` for a person to look at.

mod browser;

use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::serve::{Served, call, rt, sha, until};
use crate::support::Scratch;
use browser::{Browser, WAIT};

/// A gate between two steps; the first step's output carries markup that must stay text.
const GATED: &str = r#"
name: gated
on:
  schedule:
    - {cron: "0 0 3 * * *"}
steps:
  - id: before
    uses: hello
    with: {name: "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned = 2'>"}
  - id: promote
    uses: hello
    needs: before
    approval: {message: "promote the standby?"}
  - id: after
    uses: hello
    needs: promote
"#;

/// A drill whose "fault" is the run's start and whose recovery is a probe of the server itself.
const DRILL: &str = r#"
name: drill
drill: {rto: 60s, rpo-bytes: 16MiB}
inputs:
  url: {type: string}
steps:
  - id: probe
    uses: http-probe
    with: {url: "${{ inputs.url }}"}
    grants: {http: ["${{ inputs.url }}"]}
  - id: report
    uses: drill-report
    needs: probe
    with:
      fault_at_ms: ${{ run.started_at_ms }}
      recovered_at_ms: ${{ steps.probe.outputs.at_ms }}
      rpo_bytes: 4096
      rto_target_ms: 60000
"#;

/// A server over `GATED` and `DRILL` with a viewer (`vic`) and an operator-approver (`alice`).
fn serve(s: &Scratch) -> Served {
    s.write("wf/gated.yaml", GATED);
    s.write("wf/drill.yaml", DRILL);
    s.write(
        "tokens.toml",
        &format!(
            "[[token]]\nname = \"vic\"\nsha256 = \"{}\"\n\n[[token]]\nname = \"alice\"\nroles = [\"operator\", \"approver\"]\nsha256 = \"{}\"\n",
            sha("viewer-token"),
            sha("alice-token")
        ),
    );
    Served::start(s, &["--workflows", "wf", "--tokens", "tokens.toml"])
}

/// Starts a run of `workflow` through the API; its id.
async fn start(served: &Served, workflow: &str) -> String {
    let inputs = match workflow {
        "drill" => json!({"url": served.url("/healthz")}),
        _ => json!({}),
    };
    let (code, body) = call(
        "POST",
        &served.url("/api/v1/runs"),
        Some("alice-token"),
        Some(json!({ "workflow": workflow, "inputs": inputs })),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn status_becomes(served: &Served, id: &str, status: &str) -> Json {
    until(
        &served.url(&format!("/api/v1/runs/{id}")),
        Some("viewer-token"),
        WAIT,
        |b| b["summary"]["status"] == status,
    )
    .await
}

#[test]
fn an_approver_approves_in_the_browser_and_the_timeline_moves_on_without_a_reload() {
    let s = Scratch::new();
    let served = serve(&s);
    rt().block_on(async {
        let id = start(&served, "gated").await;
        status_becomes(&served, &id, "awaiting-approval").await;

        let b = Browser::start().await;
        // Any page sends a stranger to the login page, and back after it.
        b.sign_in(&served.base, "alice-token", &format!("/runs/{id}"))
            .await;
        let page = b.js("return document.body.innerText;").await;
        let page = page.as_str().unwrap();
        assert!(
            page.contains("Waiting for an approval before promote"),
            "{page}"
        );
        assert!(page.contains("promote the standby?"), "{page}");
        // What the step wrote is shown as text, never run.
        let output = b
            .js("return document.querySelector('#steps pre').textContent;")
            .await;
        assert!(
            output
                .as_str()
                .unwrap()
                .contains("<script>window.__pwned = 1</script>"),
            "{output}"
        );
        assert_eq!(
            b.js("return window.__pwned === undefined && !document.querySelector('main img');")
                .await,
            json!(true)
        );
        assert_eq!(b.count("button.approve").await, 1);
        assert_eq!(
            b.count(".tl tbody tr").await,
            3,
            "a lane per step, the one not started too"
        );
        b.shot("run-waiting").await;

        // The page's own marker survives only if the page is never reloaded.
        b.js("window.__sameDocument = 42; return true;").await;
        b.client
            .find(fantoccini::Locator::Css("textarea[name=comment]"))
            .await
            .unwrap()
            .send_keys("standby lag is 0, go")
            .await
            .unwrap();
        b.client
            .find(fantoccini::Locator::Css("button.approve"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        b.until_js(
            "return !!document.querySelector('#live .say.succeeded');",
            "the run to succeed on the page",
        )
        .await;
        assert_eq!(
            b.js("return window.__sameDocument;").await,
            json!(42),
            "the page was reloaded"
        );
        let page = b
            .js("return document.querySelector('#live').innerText;")
            .await;
        let page = page.as_str().unwrap();
        assert!(page.contains("approved by alice"), "{page}");
        assert!(page.contains("standby lag is 0, go"), "{page}");
        assert_eq!(
            b.count(".tl .b.success").await,
            3,
            "every step's attempt is a green bar: {page}"
        );
        assert_eq!(b.count("button.approve").await, 0);
        b.shot("run-succeeded").await;
        let run = status_becomes(&served, &id, "succeeded").await;
        assert_eq!(run["summary"]["status"], "succeeded");

        // The other pages, as this operator sees them.
        b.goto(&served.url("/")).await;
        assert!(b.count("a[href^='/runs/']").await >= 1);
        b.shot("overview").await;
        b.goto(&served.url("/runs?workflow=gated")).await;
        assert_eq!(b.count("table.rows tbody tr").await, 1);
        b.shot("runs").await;
        b.goto(&served.url("/schedules")).await;
        assert_eq!(b.count("form[action$='/pause'] button").await, 1);
        b.shot("schedules").await;
        // A phone's width.
        b.client.set_window_size(390, 844).await.unwrap();
        b.goto(&served.url(&format!("/runs/{id}"))).await;
        b.shot("run-phone").await;
        b.close().await;
    });
}

#[test]
fn a_viewer_sees_no_approve_button_and_a_forged_post_changes_nothing() {
    let s = Scratch::new();
    let served = serve(&s);
    rt().block_on(async {
        let id = start(&served, "gated").await;
        status_becomes(&served, &id, "awaiting-approval").await;

        let b = Browser::start().await;
        b.sign_in(&served.base, "viewer-token", &format!("/runs/{id}"))
            .await;
        assert_eq!(b.count("button.approve").await, 0);
        assert_eq!(b.count("button.reject").await, 0);
        let page = b.js("return document.body.innerText;").await;
        assert!(
            page.as_str().unwrap().contains("no approver role"),
            "{page}"
        );
        b.shot("run-viewer").await;
        b.close().await;

        // An approver's signed-in browser, and a request that did not come from its page:
        // the session cookie goes along, the CSRF token does not.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = client
            .post(served.url("/login"))
            .form(&[("token", "alice-token"), ("next", "/")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let session = cookie.split(';').next().unwrap().to_string();
        // Login CSRF: a sign-in posted by a page of another site is refused (it signed the
        // browser in as whoever's token that page held).
        let r = client
            .post(served.url("/login"))
            .header("origin", "http://127.0.0.2:9999")
            .header("sec-fetch-site", "cross-site")
            .form(&[("token", "alice-token"), ("next", "/")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get("set-cookie").is_none());
        // Logout CSRF: a sign-out form without the session's token leaves the session alone
        // (the cookie was cleared all the same).
        let r = client
            .post(served.url("/logout"))
            .header("cookie", &session)
            .form(&[("csrf", "")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get("set-cookie").is_none());
        // Signing in from a filtered list comes back to it, filters kept; a filter that does
        // not parse gets the console's error page (it was axum's plain text).
        let r = client
            .get(served.url("/runs?workflow=gated&page=2"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let to = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            to.contains("next=/runs%3Fworkflow%3Dgated%26page%3D2"),
            "{to}"
        );
        let r = client
            .get(served.url("/runs?page=-1"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{:?}",
            r.headers()
        );
        let gate = served.url(&format!("/runs/{id}/approvals/promote"));
        for form in [
            vec![("decision", "approve")],
            vec![("decision", "approve"), ("csrf", "0123")],
        ] {
            let r = client
                .post(&gate)
                .header("cookie", &session)
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{form:?}");
            assert!(r.text().await.unwrap().contains("CSRF"));
        }
        // The JSON API with the cookie and no X-CSRF-Token: refused too.
        let r = client
            .post(served.url(&format!("/api/v1/runs/{id}/approvals/promote")))
            .header("cookie", &session)
            .json(&json!({"decision": "approve"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        // Without any session.
        let r = reqwest::Client::new()
            .post(&gate)
            .form(&[("decision", "approve"), ("csrf", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, run) = call(
            "GET",
            &served.url(&format!("/api/v1/runs/{id}")),
            Some("viewer-token"),
            None,
        )
        .await;
        assert_eq!(run["summary"]["status"], "awaiting-approval", "{run}");
        assert_eq!(run["waiting_for_approval"], json!(["promote"]));
    });
}

#[test]
fn the_drills_page_charts_every_drill_against_its_target() {
    const N: usize = 3;
    let s = Scratch::new();
    let served = serve(&s);
    rt().block_on(async {
        // One after the other: a drill is refused while another of its workflow goes.
        let mut ids = Vec::new();
        for _ in 0..N {
            let id = start(&served, "drill").await;
            status_becomes(&served, &id, "succeeded").await;
            ids.push(id);
        }
        let b = Browser::start().await;
        b.sign_in(&served.base, "viewer-token", "/drills").await;
        assert_eq!(b.count("svg[data-figure='RTO'] circle").await, N);
        assert_eq!(
            b.count("svg[data-figure='RTO'] .target").await,
            1,
            "the target line"
        );
        assert_eq!(b.count("svg[data-figure='RPO bytes'] circle").await, N);
        let page = b.js("return document.body.innerText;").await;
        let page = page.as_str().unwrap();
        assert!(page.contains(&format!("{N} of {N}")), "pass rate: {page}");
        b.shot("drills").await;

        // One drill's report: its figures against the targets, the fault and recovery marks.
        b.goto(&served.url(&format!("/runs/{}", ids[0]))).await;
        let page = b.js("return document.body.innerText;").await;
        let page = page.as_str().unwrap();
        assert!(
            page.contains("Drill: met") && page.contains("1 min 00 s"),
            "{page}"
        );
        assert!(page.contains("4.0 KiB"), "RPO bytes: {page}");
        assert_eq!(b.count(".tl .mk.fault").await, 1);
        assert_eq!(b.count(".tl .rto").await, 1);
        b.shot("drill-run").await;
        b.close().await;
    });
}
