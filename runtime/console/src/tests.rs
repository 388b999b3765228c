//! The pages from hand-made journals: escaping, a failed drill's section, figures the page
//! does not know by name, retries and matrix legs on the timeline.

use std::time::Duration;

use meridian_protocol::{Event, Mode, Outcome, RunStatus, StepError};
use meridian_runner::{DrillFigure, DrillVerdict};
use meridian_store::{EventRecord, RunRecord, RunSettings, RunSummary};
use serde_json::json;

use crate::{RunData, Shell, Viewer, run_page};

const EVIL: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

fn record() -> RunRecord {
    RunRecord {
        id: "r1".into(),
        workflow: "dr-drill".into(),
        workflow_path: "/w/dr-drill.yaml".into(),
        workflow_sha256: String::new(),
        mode: Mode::Apply,
        inputs: json!({"who": EVIL}),
        settings: RunSettings::default(),
    }
}

fn summary(status: RunStatus, message: &str) -> RunSummary {
    RunSummary {
        id: "r1".into(),
        workflow: "dr-drill".into(),
        mode: Mode::Apply,
        status,
        created_at_ms: 1_000,
        finished_at_ms: Some(9_000),
        message: Some(message.into()),
    }
}

fn at(seq: i64, at_ms: i64, event: Event) -> EventRecord {
    EventRecord { seq, at_ms, event }
}

/// A run: `kill` succeeds, `switch[eu]` and `switch[us]` (a matrix), `verify` fails twice and
/// then for good with a message that is markup.
fn events() -> Vec<EventRecord> {
    let start = |step: &str, leg: &str, attempt| Event::AttemptStarted {
        step: step.into(),
        leg: leg.into(),
        attempt,
        idempotency_key: String::new(),
        input: json!({}),
    };
    let done = |step: &str, leg: &str, outcome, attempts, output, error| Event::LegFinished {
        step: step.into(),
        leg: leg.into(),
        outcome,
        attempts,
        duration: Duration::from_millis(500),
        output,
        plan: vec![],
        error,
    };
    vec![
        at(
            1,
            1_000,
            Event::RunStarted {
                run_id: "r1".into(),
                workflow: "dr-drill".into(),
                mode: Mode::Apply,
                inputs: json!({}),
            },
        ),
        at(2, 1_100, start("kill", "", 1)),
        at(
            3,
            1_600,
            done(
                "kill",
                "",
                Outcome::Success,
                1,
                json!({"killed_at_ms": 1_500}),
                None,
            ),
        ),
        at(
            4,
            1_600,
            Event::StepLog {
                step: "kill".into(),
                leg: String::new(),
                attempt: 1,
                lines: vec![meridian_protocol::LogLine {
                    level: meridian_protocol::Level::Info,
                    source: meridian_protocol::LogSource::Guest,
                    message: format!("region down {EVIL}"),
                    fields: Vec::new(),
                }],
                compensation: false,
            },
        ),
        at(4, 2_000, start("switch", "eu", 1)),
        at(5, 2_000, start("switch", "us", 1)),
        at(
            6,
            2_500,
            done(
                "switch",
                "eu",
                Outcome::Success,
                1,
                json!({"note": EVIL}),
                None,
            ),
        ),
        at(
            7,
            2_600,
            done("switch", "us", Outcome::Success, 1, json!({}), None),
        ),
        at(8, 3_000, start("verify", "", 1)),
        at(
            9,
            3_500,
            Event::AttemptFailed {
                step: "verify".into(),
                leg: String::new(),
                attempt: 1,
                error: StepError::Retryable(EVIL.into()),
                retry_in: None,
            },
        ),
        at(10, 4_000, start("verify", "", 2)),
        at(
            11,
            4_500,
            done(
                "verify",
                "",
                Outcome::Failure,
                2,
                json!(null),
                Some(StepError::Fatal(EVIL.into())),
            ),
        ),
        at(
            12,
            9_000,
            Event::RunFinished {
                status: RunStatus::Failed,
                duration: Duration::from_millis(8_000),
                message: EVIL.into(),
            },
        ),
    ]
}

fn verdict() -> DrillVerdict {
    DrillVerdict {
        figures: vec![
            DrillFigure {
                name: "RTO",
                unit: "ms",
                achieved: None,
                target: Some(60_000.0),
                note: Some("the runner stopped during the drill".into()),
            },
            DrillFigure {
                name: "RPO rows",
                unit: "rows",
                achieved: Some(3.0),
                target: Some(0.0),
                note: None,
            },
        ],
        verdict: meridian_runner::Overall::Missed,
    }
}

fn page(shell: Shell<'_>) -> String {
    let (rec, sum, ev, v) = (
        record(),
        summary(RunStatus::Failed, EVIL),
        events(),
        verdict(),
    );
    run_page(
        &RunData {
            record: &rec,
            summary: &sum,
            events: &ev,
            steps: &[],
            drill: Some(&v),
            drill_note: None,
            now_ms: 10_000,
            live: false,
        },
        shell,
    )
}

#[test]
fn what_steps_wrote_is_escaped_everywhere() {
    for html in [page(Shell::File), page(Shell::Served(&viewer(true)))] {
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
    }
    // A step's log lines are on the page, as text.
    let file = page(Shell::File);
    assert!(file.contains("Log of attempt 1"), "{file}");
    assert!(file.contains("info: region down &lt;script&gt;"), "{file}");
    // The file has no script at all and a policy that would refuse one.
    let file = page(Shell::File);
    assert!(!file.contains("<script"));
    assert!(file.contains("Content-Security-Policy"));
}

#[test]
fn a_failed_drill_shows_its_figures_and_says_incomplete_or_missed() {
    let html = page(Shell::File);
    assert!(html.contains(">Drill: "), "{html}");
    assert!(html.contains("not measured"), "{html}");
    // A figure the page has never heard of, with its own unit.
    assert!(
        html.contains("RPO rows")
            && html.contains("3 rows")
            && html.contains("the runner stopped during the drill"),
        "{html}"
    );
    assert!(html.contains("badge missed"), "{html}");
    // The error in words, the time of day, the fault marker from `killed_at_ms`.
    assert!(html.contains("The step failed: &lt;script&gt;"), "{html}");
    assert!(html.contains("A temporary failure"), "{html}");
    assert!(html.contains("1970-01-01 00:00:01 UTC"), "{html}");
    assert!(html.contains("class=\"mk fault"), "{html}");
}

#[test]
fn attempts_are_bars_and_legs_are_lanes() {
    let html = page(Shell::File);
    let lanes = html.split("Timeline of the run").nth(1).unwrap();
    let lanes = lanes.split("<tbody>").nth(1).unwrap();
    let lanes = lanes.split("</tbody>").next().unwrap();
    assert_eq!(lanes.matches("<tr").count(), 4, "{lanes}");
    assert_eq!(
        lanes.matches("<tr class=\"leg\"").count(),
        2,
        "switch[eu], switch[us]"
    );
    assert!(html.contains("switch[eu]") && html.contains("switch[us]"));
    assert_eq!(
        html.matches("class=\"b failure\"").count(),
        2,
        "verify's two attempts"
    );
    assert!(html.contains("attempt 2: failure"));
}

fn viewer(approver: bool) -> Viewer {
    Viewer {
        name: "vic".into(),
        roles: "viewer".into(),
        may_approve: approver,
        may_operate: false,
        csrf: "c".repeat(64),
        signed_in: true,
    }
}

#[test]
fn only_an_approver_gets_the_buttons_and_the_form_carries_the_csrf_token() {
    let (rec, sum) = (record(), summary(RunStatus::AwaitingApproval, ""));
    let ev = vec![
        at(
            1,
            1_000,
            Event::RunStarted {
                run_id: "r1".into(),
                workflow: "dr-drill".into(),
                mode: Mode::Apply,
                inputs: json!({}),
            },
        ),
        at(
            2,
            1_100,
            Event::ApprovalRequired {
                step: "promote".into(),
                message: "go?".into(),
            },
        ),
    ];
    let render = |v: &Viewer| {
        run_page(
            &RunData {
                record: &rec,
                summary: &sum,
                events: &ev,
                steps: &[],
                drill: None,
                drill_note: None,
                now_ms: 2_000,
                live: false,
            },
            Shell::Served(v),
        )
    };
    let yes = render(&viewer(true));
    assert!(yes.contains(">Approve</button>") && yes.contains(">Reject</button>"));
    assert!(yes.contains(&format!("name=\"csrf\" value=\"{}\"", "c".repeat(64))));
    let no = render(&viewer(false));
    assert!(!no.contains(">Approve</button>"));
    assert!(no.contains("no approver role"));
}

#[test]
fn the_overview_shows_drift_and_the_followed_branch_escaped() {
    let row = crate::WorkflowRow {
        name: Some("config-sync-gitops".into()),
        file: "config-sync-gitops.yaml".into(),
        description: None,
        error: None,
        last_run: None,
        next_fire_ms: None,
        last_drill: None,
        last_plan: None,
        readiness: None,
        drift: Some(crate::DriftRow {
            state: "drift".into(),
            checked_at_ms: 1_700_000_000_000,
            summary: "us: 1 object differs <script>x</script>".into(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        }),
        git: Some(crate::GitRow {
            repo: "/srv/git/gateway.git".into(),
            branch: "main".into(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            error: None,
        }),
    };
    let html = crate::overview_page(&[row], &viewer(false));
    assert!(
        html.contains(r#"<span class="badge drift">drift</span>"#),
        "{html}"
    );
    assert!(html.contains("against <code>0123456789ab</code>"), "{html}");
    assert!(
        html.contains("git: /srv/git/gateway.git main @ <code>0123456789ab</code>"),
        "{html}"
    );
    assert!(!html.contains("<script>x"), "{html}");
}

/// A badge's class is one word of a fixed shape, never text as given: a schedule's last result
/// (a step's error in it) put each of its words in the class list.
#[test]
fn a_badge_class_is_never_text_as_given() {
    let html = crate::layout::badge("failed: succeeded skip").into_string();
    assert!(html.starts_with("<span class=\"badge other\">"), "{html}");
    let html = crate::layout::badge("awaiting-approval").into_string();
    assert!(
        html.starts_with("<span class=\"badge awaiting-approval\">"),
        "{html}"
    );
}
