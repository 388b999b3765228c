use std::time::Duration;

use serde_json::{Value as Json, json};

use super::*;
use crate::expr::{EvalContext, RunStatus};
use crate::workflow::*;

fn wf(yaml: &str) -> Workflow {
    crate::parse("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(yaml: &str) -> Vec<String> {
    let (_, d) = crate::analyze("t.yaml", yaml);
    d.iter()
        .map(|d| format!("{}:{}: {}", d.span.line, d.span.col, d.message))
        .collect()
}

#[test]
fn typed_fields() {
    let w = wf(r#"
name: typed
description: d
inputs:
  n: {type: number, default: 2}
  d: {type: duration, default: 90}
  must: {type: string, required: true}
  plain:
vars: {a: "${{ inputs.n }}", b: [1, "x${{ vars.a }}"]}
connections:
  db: {postgres: "host=x"}
  web: {url: "http://127.0.0.1:9180"}
secrets: [S1, S2]
on: {schedule: [{cron: "@hourly"}]}
drill: {rto: 1m, rpo: 0s, rpo-bytes: 0}
timeout: 1h
max-parallel: 3
steps:
  - id: a
    uses: hello
    retry: {attempts: 4, backoff: constant, initial: 2s, max: 2s, jitter: false, on: fatal}
    timeout: 250ms
    continue-on-error: true
    grants:
      http: {allow: [web, "https://*.x.com:8443"], max-request: 1KiB, max-response: 2MB, timeout: 5s}
      sql: [db]
      fs: [data/, {path: /abs, mode: rw}, {path: rel, guest: /g}]
      secrets: [S2]
    limits: {memory: 32MiB, output: 100, handles: 32}
    compensate: {uses: undo, with: {k: v}}
    approval: true
  - id: b
    uses: hello
    needs: a
    if: false
    strategy: {matrix: {r: [eu, us]}, max-parallel: 1, fail-fast: false}
    approval: {message: "ok ${{ matrix.r }}?", timeout: 10m}
"#.replace("required: true}", "required: true, default: x}").as_str());
    assert_eq!(w.name, "typed");
    assert_eq!(w.inputs["n"].default, Some(json!(2)));
    assert_eq!(w.inputs["d"].default, Some(json!("90")));
    assert!(!w.inputs["must"].required);
    assert_eq!(w.inputs["plain"].ty, InputType::String);
    assert_eq!(w.vars.len(), 2);
    assert!(matches!(
        w.connections["db"].kind,
        ConnectionKind::Postgres(_)
    ));
    assert_eq!(w.secrets.len(), 2);
    assert_eq!(
        w.on.as_ref().unwrap().schedule[0].overlap,
        OverlapPolicy::Skip
    );
    let d = w.drill.as_ref().unwrap();
    assert_eq!(
        (d.rto, d.rpo, d.rpo_bytes),
        (Some(Duration::from_secs(60)), Some(Duration::ZERO), Some(0))
    );
    assert_eq!(w.timeout, Some(Duration::from_secs(3600)));
    assert_eq!(w.max_parallel, Some(3));
    let a = &w.steps[0];
    assert_eq!(
        a.retry,
        Some(RetryPolicy {
            attempts: 4,
            backoff: Backoff::Constant,
            initial: Duration::from_secs(2),
            max: Duration::from_secs(2),
            jitter: false,
            on: vec![RetryOn::Fatal],
        })
    );
    assert_eq!(a.timeout, Some(Duration::from_millis(250)));
    assert!(a.continue_on_error);
    let http: Vec<String> = a.grants.http.iter().map(|h| h.value.to_string()).collect();
    assert_eq!(http, ["web", "https://*.x.com:8443"]);
    assert!(matches!(&a.grants.http[0].value, HttpGrant::Connection(c) if c == "web"));
    assert!(matches!(a.grants.http[1].value, HttpGrant::Pattern(_)));
    assert_eq!(
        a.grants.http_limits,
        HttpLimits {
            max_request_bytes: 1024,
            max_response_bytes: 2_000_000,
            timeout: Duration::from_secs(5)
        }
    );
    assert_eq!(a.grants.sql[0].value, "db");
    let fs: Vec<(&std::path::Path, &str, bool)> = a
        .grants
        .fs
        .iter()
        .map(|f| (f.host.as_path(), f.guest.as_str(), f.writable))
        .collect();
    let here = std::env::current_dir().unwrap();
    assert_eq!(
        fs,
        [
            (here.join("data").as_path(), "/data", false),
            (std::path::Path::new("/abs"), "/abs", true),
            (here.join("rel").as_path(), "/g", false)
        ]
    );
    assert_eq!(a.grants.secrets[0].value, "S2");
    assert_eq!(
        a.limits,
        Limits {
            memory: 32 << 20,
            output: 100,
            handles: 32
        }
    );
    assert!(
        matches!(&a.compensate, Compensate::Step { uses, with, .. } if uses.value == "undo" && with.contains_key("k"))
    );
    assert!(
        a.approval
            .as_ref()
            .is_some_and(|p| p.message.is_none() && p.timeout.is_none())
    );
    let b = &w.steps[1];
    assert_eq!(b.needs[0].value, "a");
    assert_eq!(b.condition.as_ref().unwrap().value.source(), "false");
    let m = b.matrix.as_ref().unwrap();
    assert_eq!((m.max_parallel, m.fail_fast), (Some(1), false));
    assert_eq!(
        b.approval.as_ref().unwrap().timeout,
        Some(Duration::from_secs(600))
    );
}

#[test]
fn defaults() {
    let w = wf("name: d\nsteps:\n  - id: a\n    uses: hello\n    retry: 2\n");
    let a = &w.steps[0];
    let r = a.retry.as_ref().unwrap();
    assert_eq!(r.attempts, 2);
    assert_eq!(r.backoff, Backoff::Exponential);
    assert!(r.jitter);
    assert_eq!(r.on, [RetryOn::Retryable, RetryOn::Timeout]);
    assert_eq!(a.limits, Limits::default());
    assert_eq!(a.grants.http_limits, HttpLimits::default());
    assert!(matches!(a.compensate, Compensate::None));
    assert!(a.approval.is_none() && a.condition.is_none() && a.matrix.is_none());
}

#[test]
fn with_values_evaluate() {
    let w = wf(
        "name: v\ninputs: {n: {type: number, default: 1}}\nsteps:\n  - id: a\n    uses: hello\n    with:\n      n: ${{ inputs.n }}\n      s: \"n=${{ inputs.n }}\"\n      l: [1, true, null, \"${{ inputs.n }}\"]\n      m: {k: v}\n",
    );
    let ctx = EvalContext {
        data: json!({"inputs": {"n": 5}}),
        status: RunStatus::default(),
    };
    let with: serde_json::Map<String, Json> = w.steps[0]
        .with
        .iter()
        .map(|(k, v)| (k.clone(), v.eval(&ctx).unwrap()))
        .collect();
    assert_eq!(
        Json::Object(with),
        json!({"n": 5, "s": "n=5", "l": [1, true, null, 5], "m": {"k": "v"}})
    );
    assert_eq!(w.steps[0].with["s"].to_json(), json!("n=${{ inputs.n }}"));
    assert!(!w.steps[0].with["l"].is_literal());
    assert!(w.steps[0].with["m"].is_literal());
}

#[test]
fn matrix_legs_match_the_engine_rule() {
    let w = wf(
        "name: m\nsteps:\n  - id: a\n    uses: hello\n    strategy:\n      matrix:\n        r: [eu, us]\n        n: [1, 2]\n        exclude: [{r: us, n: 2}]\n        include: [{r: ap, n: 1, extra: true}, {r: eu, n: 1}]\n",
    );
    let m = w.steps[0].matrix.as_ref().unwrap();
    let keys: Vec<String> = m
        .static_legs()
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert_eq!(keys, ["eu,1", "eu,2", "us,1", "ap,1,true"]);
    assert_eq!(m.keys(), ["r", "n", "extra"]);
}

#[test]
fn expressions_in_block_and_quoted_scalars_are_located() {
    // Literal block: the error is on the second content line.
    let e = errors(
        "name: x\nsteps:\n  - id: a\n    uses: hello\n    with:\n      script: |\n        first ${{ inputs.a }}\n        then ${{ inptus.b }}\n",
    );
    assert!(
        e.contains(&"8:18: invalid expression: unknown context `inptus`".to_owned()),
        "{e:?}"
    );
    // Double-quoted with an escape before the expression: still found by counting `${{`.
    let e = errors(
        "name: x\nsteps:\n  - id: a\n    uses: hello\n    with:\n      s: \"a\\tb ${{ inputz }}\"\n",
    );
    assert!(
        e.contains(&"6:20: invalid expression: unknown context `inputz`".to_owned()),
        "{e:?}"
    );
    // Single-quoted `if:` without braces.
    let e = errors("name: x\nsteps:\n  - id: a\n    uses: hello\n    if: 'inputs.x =='\n");
    assert!(
        e.iter().any(|m| m.starts_with("5:21: invalid expression")),
        "{e:?}"
    );
}

#[test]
fn every_problem_is_collected() {
    let e = errors(
        "name: x\ntimeout: nope\nmax-parallel: 0\nsteps:\n  - id: a\n    uses: hello\n    timeout: 0\n    limits: {memory: lots}\n  - id: a\n    uses: hello\n    nedds: [b]\n",
    );
    assert_eq!(e.len(), 6, "{e:?}");
}

#[test]
fn locate_falls_back_to_the_scalar() {
    let text = "k: \"\\u0041${{ x }}\"";
    let map = SourceMap::new(text);
    let region = map.span(3, text.len());
    // The value `A${{ x }}`: the escape shifts everything by 5 bytes, `${{` is still found.
    let s = locate(&map, region, "A${{ x }}", 5, 1);
    assert_eq!(&text[s.offset..s.offset + 1], "x");
    // Text the source does not contain verbatim points at the scalar.
    let s = locate(&map, region, "A", 0, 1);
    assert_eq!(s.offset, region.offset);
}

#[test]
fn uses_forms() {
    let ok = "name: u\nsteps:\n  - {id: a, uses: ./steps/a@v2/x.wasm}\n  - {id: b, uses: \"hello@sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\"}\n";
    assert!(crate::parse("t", ok).is_ok());
    let e = errors("name: u\nsteps:\n  - {id: a, uses: hello@latest}\n  - {id: b, uses: \" \"}\n");
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn identifiers() {
    assert!(is_ident("deploy-eu_1"));
    assert!(is_ident("_x"));
    assert!(!is_ident("1a"));
    assert!(!is_ident("a b"));
    assert!(!is_ident(""));
    assert!(is_secret_name("PG_PASSWORD"));
    assert!(!is_secret_name("PG-PASSWORD"));
}

/// `uses:` paths are resolved against the workflow file's directory once, here, so whoever
/// loads the component (a worker in another directory) gets an absolute path.
#[test]
fn uses_paths_resolve_against_the_workflow_file() {
    let yaml = "name: t\nsteps:\n  - id: a\n    uses: ./steps/x.wasm\n    compensate: {uses: ../undo.wasm}\n  - id: b\n    uses: hello\n";
    let w = crate::parse("/srv/flows/wf.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    let path = |c: Option<&ComponentRef>| match c {
        Some(ComponentRef::Path { path, .. }) => path.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        path(w.steps[0].component.as_ref()),
        std::path::Path::new("/srv/flows/steps/x.wasm")
    );
    let Compensate::Step { component, .. } = &w.steps[0].compensate else {
        panic!("{:?}", w.steps[0].compensate);
    };
    assert_eq!(
        path(Some(component)),
        std::path::Path::new("/srv/flows/../undo.wasm")
    );
    assert_eq!(w.steps[0].uses.value, "./steps/x.wasm", "kept as written");
    assert_eq!(w.steps[1].component, Some(ComponentRef::builtin("hello")));
    // A relative file name is relative to the parsing process's directory.
    let w = crate::parse("flows/wf.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        path(w.steps[0].component.as_ref()),
        cwd.join("flows/steps/x.wasm")
    );
}

#[test]
fn schedule_entries() {
    let w = wf(r#"
name: s
inputs:
  region: {type: string, required: true}
on:
  schedule:
    - cron: "*/5 * * * * *"
      overlap: cancel-previous
      timezone: Europe/Berlin
      catch-up: latest
      jitter: 2s
      inputs: {region: eu}
steps: [{id: a, uses: hello}]
"#);
    let s = &w.on.as_ref().unwrap().schedule[0];
    assert_eq!(s.overlap, OverlapPolicy::CancelPrevious);
    assert_eq!(s.timezone.as_deref(), Some("Europe/Berlin"));
    assert!(s.catch_up);
    assert_eq!(s.jitter, Some(Duration::from_secs(2)));
    assert_eq!(s.inputs["region"], "eu");

    let e = errors(
        r#"
name: s
inputs:
  region: {type: string, required: true}
on:
  schedule:
    - cron: "@hourly"
      timezone: Europe/Berlinn
      catch-up: all
      inputs: {regoin: eu}
steps: [{id: a, uses: hello}]
"#,
    );
    let all = e.join("\n");
    assert!(
        all.contains("8:17: unknown time zone `Europe/Berlinn`"),
        "{all}"
    );
    assert!(all.contains("9:17: invalid `catch-up`"), "{all}");
    assert!(
        all.contains("does not declare") && all.contains("required input `region`"),
        "{all}"
    );
}

#[test]
fn drill_canaries_parse_and_bad_ones_say_where() {
    let w = wf(r#"
name: d
inputs: {host: {type: string, default: api.example.com}}
connections:
  primary: {postgres: "host=a"}
  standby: {postgres: "host=b"}
drill:
  rto: 60s
  capacity: 90s
  rpo-rows: 10
  downtime: 30s
  write-outage: 20s
  canary:
    writer: {connection: primary, verify: standby, rate: 50}
    prober: {url: "http://${{ inputs.host }}:9080/", dns: "127.0.0.1:53"}
steps:
  - {id: a, uses: hello}
"#);
    let d = w.drill.as_ref().unwrap();
    assert_eq!(d.rpo_rows, Some(10));
    assert_eq!(d.capacity, Some(Duration::from_secs(90)));
    assert_eq!(d.downtime, Some(Duration::from_secs(30)));
    assert_eq!(d.write_outage, Some(Duration::from_secs(20)));
    let c = d.canary.as_ref().unwrap();
    assert_eq!(c.writer.as_ref().unwrap().rate, 50);
    assert_eq!(c.writer.as_ref().unwrap().table, "meridian_canary");
    assert_eq!(c.prober.as_ref().unwrap().rate, 10);

    let e = errors(
        r#"
name: d
connections: {primary: {postgres: "host=a"}}
drill:
  rpo-rows: 1
  canary:
    writer: {connection: primary, verify: standy, rate: 5000, table: "x; DROP"}
    prober: {url: "http://${{ steps.a.outputs.url }}/"}
steps:
  - {id: a, uses: hello}
"#,
    );
    let all = e.join("\n");
    assert!(all.contains("no connection named `standy`"), "{all}");
    assert!(all.contains("above 200 per second"), "{all}");
    assert!(all.contains("not a plain table name"), "{all}");
    assert!(
        all.contains("`steps` cannot be used in `drill.canary`"),
        "{all}"
    );
    let e = errors("name: d\ndrill: {downtime: 5s}\nsteps:\n  - {id: a, uses: hello}\n");
    assert!(e.join("\n").contains("no `canary` block"), "{e:?}");
}

#[test]
fn git_trigger() {
    let w = wf(r#"
name: g
inputs:
  git_commit: {type: string, required: true}
  git_files: {type: map, default: {}}
on:
  git:
    repo: ../gateway-config
    branch: release/2026
    paths: [adc/**, "*.yaml"]
    interval: 15s
    webhook-secret: GIT_WEBHOOK_SECRET
steps: [{id: a, uses: hello}]
"#);
    let g = w.on.as_ref().unwrap().git.as_ref().unwrap();
    assert!(
        g.repo.ends_with("gateway-config") && g.repo.starts_with('/'),
        "{}",
        g.repo
    );
    assert_eq!(g.branch, "release/2026");
    assert_eq!(g.paths, ["adc/**", "*.yaml"]);
    assert_eq!(g.interval, Duration::from_secs(15));
    assert_eq!(g.webhook_secret.as_deref(), Some("GIT_WEBHOOK_SECRET"));
    let url = wf(r#"
name: g
inputs: {git_commit: {type: string, required: true}}
on: {git: {repo: "https://git.example.com/org/gw.git"}}
steps: [{id: a, uses: hello}]
"#);
    let g = url.on.as_ref().unwrap().git.as_ref().unwrap();
    assert_eq!(g.repo, "https://git.example.com/org/gw.git");
    assert_eq!(
        (g.branch.as_str(), g.interval),
        ("main", Duration::from_secs(60))
    );

    let all = errors(
        r#"
name: g
inputs:
  git_files: {type: list}
on:
  git:
    repo: x
    branch: "bad branch"
    interval: 100ms
    webhook-secret: "not a name"
    colour: blue
steps: [{id: a, uses: hello}]
"#,
    )
    .join("\n");
    assert!(all.contains("unknown key `colour`"), "{all}");
    assert!(
        all.contains("8:13: `bad branch` is not a branch name"),
        "{all}"
    );
    let all = errors(
        r#"
name: g
inputs:
  git_files: {type: list}
on:
  git: {repo: x, interval: 100ms}
steps: [{id: a, uses: hello}]
"#,
    )
    .join("\n");
    assert!(
        all.contains("`on.git.interval` must be at least 1s"),
        "{all}"
    );
    assert!(all.contains("must declare the input `git_commit`"), "{all}");
    assert!(
        all.contains("input `git_files` is set by `on.git` and must have `type: map`"),
        "{all}"
    );
}

/// Each component a workflow runs, steps' and compensations' alike, is listed once, in the order
/// of its written form, however many steps use it.
#[test]
fn components_are_listed_once_each_in_text_order() {
    let w = wf(r#"
name: t
steps:
  - id: a
    uses: sleep
    compensate: {uses: hello}
  - id: b
    uses: hello
  - id: c
    uses: sleep
  - id: d
    uses: echo
    compensate: {uses: sleep}
"#);
    let names: Vec<String> = w.components().iter().map(|c| c.to_string()).collect();
    assert_eq!(names, ["echo", "hello", "sleep"]);
}

/// `integer`: what a step's integer fields take; a default that is not whole is refused, and
/// `int` points at it.
#[test]
fn integer_inputs() {
    let w = wf(
        "name: i\ninputs:\n  n: {type: integer, default: 3}\nsteps:\n  - {id: a, uses: hello}\n",
    );
    assert_eq!(w.inputs["n"].ty, InputType::Integer);
    assert_eq!(w.inputs["n"].default, Some(json!(3)));
    let e = errors(
        "name: i\ninputs:\n  n: {type: integer, default: 1.5}\nsteps:\n  - {id: a, uses: hello}\n",
    );
    assert!(
        e.iter().any(|e| e.contains("must be an integer, found")),
        "{e:?}"
    );
    let (_, d) = crate::analyze(
        "t.yaml",
        "name: i\ninputs:\n  n: {type: int}\nsteps:\n  - {id: a, uses: hello}\n",
    );
    assert!(
        d.iter()
            .any(|d| d.hint.as_deref() == Some("did you mean `integer`?")),
        "{d}"
    );
}
