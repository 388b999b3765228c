use super::*;
use meridian_protocol::{GrantKind, GrantRequest};
use serde_json::json;

fn wf(yaml: &str) -> Workflow {
    crate::parse("w.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn route53() -> StepSchema {
    StepSchema {
        input: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["zone", "record"],
            "properties": {
                "zone": {"type": "string", "description": "hosted zone id"},
                "record": {"type": "string", "minLength": 1},
                "ttl": {"type": "integer", "minimum": 1, "maximum": 86400},
                "mode": {"enum": ["failover", "weighted"]},
                "dry": {"type": "boolean"},
                "targets": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/target"}},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "$defs": {"target": {"type": "object", "required": ["region"], "additionalProperties": false,
                                   "properties": {"region": {"type": "string"}, "weight": {"type": "number"}}}}
        }),
        output: json!({"type": "object", "properties": {"change_id": {"type": "string"}, "status": {}}}),
        grants_needed: vec![
            GrantRequest {
                kind: GrantKind::Http,
                detail: "https://route53.amazonaws.com".into(),
            },
            GrantRequest {
                kind: GrantKind::Secret,
                detail: "AWS_KEY".into(),
            },
        ],
    }
}

fn lookup(c: &ComponentRef) -> Option<StepSchema> {
    match c.builtin_name()? {
        "gslb-route53" => Some(route53()),
        "hello" => Some(StepSchema {
            input: json!({"type": "object", "properties": {"name": {"type": "string"}}}),
            output: json!({"type": "object", "properties": {"greeting": {"type": "string"}}, "additionalProperties": false}),
            grants_needed: vec![],
        }),
        _ => None,
    }
}

fn messages(d: &[Diagnostic]) -> Vec<String> {
    d.iter()
        .map(|d| format!("{}:{}: {}", d.span.line, d.span.col, d.message))
        .collect()
}

const HEAD: &str =
    "name: t\ninputs:\n  ttl: {type: number, default: 60}\nsecrets: [AWS_KEY]\nsteps:\n";

#[test]
fn a_good_step_passes() {
    let w = wf(&format!(
        "{HEAD}  - id: dns\n    uses: gslb-route53\n    with:\n      zone: Z1\n      record: api.example.com\n      ttl: ${{{{ inputs.ttl }}}}\n      mode: failover\n      targets: [{{region: eu, weight: 1.5}}]\n      tags: {{a: b}}\n    grants:\n      http: [\"https://*.amazonaws.com\"]\n      secrets: [AWS_KEY]\n"
    ));
    let d = check_steps(&w, &lookup);
    assert!(d.is_empty(), "{:?}", messages(&d));
}

#[test]
fn problems_in_with_are_reported_where_they_are() {
    let w = wf(&format!(
        "{HEAD}  - id: dns\n    uses: gslb-route53\n    with:\n      zoen: Z1\n      ttl: \"30\"\n      mode: failovr\n      dry: yes\n      targets: [{{weight: x}}]\n      tags: {{a: 1}}\n      record: \"\"\n"
    ));
    let d = check_steps(&w, &lookup);
    let m = messages(&d);
    let expect = [
        "7:11: missing required input `with.zone` for step `dns` (`uses: gslb-route53`)",
        "9:7: unknown input `with.zoen` for step `dns` (`uses: gslb-route53`)",
        "10:12: `with.ttl` must be an integer, found a string",
        "11:13: `with.mode` must be one of `failover`, `weighted`, found `failovr`",
        "12:12: `with.dry` must be a boolean, found a string",
        "13:17: missing required input `with.targets[0].region` for step `dns` (`uses: gslb-route53`)",
        "13:26: `with.targets[0].weight` must be a number, found a string",
        "14:17: `with.tags.a` must be a string, found an integer",
        "15:15: `with.record` must be at least 1 characters long",
    ];
    for e in expect {
        assert!(m.iter().any(|x| x == e), "missing {e:?} in {m:#?}");
    }
    let zoen = d.iter().find(|d| d.message.contains("zoen")).unwrap();
    assert_eq!(zoen.hint.as_deref(), Some("did you mean `zone`?"));
    assert_eq!(zoen.source_line.as_deref(), Some("      zoen: Z1"));
    let ttl = d.iter().find(|d| d.message.contains("with.ttl")).unwrap();
    assert_eq!(
        ttl.hint.as_deref(),
        Some("remove the quotes to make it a number")
    );
    // Missing grants are errors.
    let w: Vec<&Diagnostic> = d
        .iter()
        .filter(|d| d.message.contains("grants do not allow"))
        .collect();
    assert_eq!(w.len(), 2, "{:?}", messages(&d));
    assert!(w.iter().all(|d| d.is_error()));
    assert!(w.iter().any(|d| {
        d.message
            .contains("needs http access to `https://route53.amazonaws.com`")
    }));
    assert!(
        w.iter()
            .any(|d| d.message.contains("needs secret access to `AWS_KEY`"))
    );
}

#[test]
fn numbers_and_mixed_templates() {
    let w = wf(&format!(
        "{HEAD}  - id: dns\n    uses: gslb-route53\n    with:\n      zone: Z1\n      record: r\n      ttl: 0\n      mode: \"x-${{{{ inputs.ttl }}}}\"\n    grants: {{http: [\"https://route53.amazonaws.com\"], secrets: [AWS_KEY]}}\n"
    ));
    let m = messages(&check_steps(&w, &lookup));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].contains("`with.ttl` must be at least 1, found 0"),
        "{m:?}"
    );
    // A mixed template is a string: checked against a number type.
    let w = wf(&format!(
        "{HEAD}  - id: dns\n    uses: gslb-route53\n    with: {{zone: Z1, record: r, ttl: \"n${{{{ inputs.ttl }}}}\"}}\n    grants: {{http: [\"https://route53.amazonaws.com\"], secrets: [AWS_KEY]}}\n"
    ));
    let m = messages(&check_steps(&w, &lookup));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].contains("`with.ttl` must be an integer, found a string"));
}

#[test]
fn output_references_are_checked() {
    let w = wf(&format!(
        "{HEAD}  - id: a\n    uses: hello\n  - id: b\n    uses: hello\n    needs: a\n    with:\n      name: ${{{{ steps.a.outputs.greting }}}} ${{{{ steps.a.outputs.greeting }}}}\n"
    ));
    let d = check_steps(&w, &lookup);
    let m = messages(&d);
    assert_eq!(
        m,
        vec!["12:17: step `a` (`uses: hello`) has no output `greting`"]
    );
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `greeting`?"));
    // gslb-route53's output schema is open-ended? No: no additionalProperties means closed here.
    let w = wf(&format!(
        "{HEAD}  - id: m\n    uses: hello\n    strategy: {{matrix: {{r: [eu, us]}}}}\n  - id: b\n    uses: hello\n    needs: m\n    if: steps.m.outputs.eu.nope == 'x' || steps.m.outputs.us.greeting\n"
    ));
    let m = messages(&check_steps(&w, &lookup));
    assert_eq!(
        m,
        vec!["12:9: step `m` (`uses: hello`) has no output `nope`"]
    );
}

#[test]
fn compensate_with_is_checked_too() {
    let w = wf(&format!(
        "{HEAD}  - id: a\n    uses: gslb-route53\n    with: {{zone: Z, record: r}}\n    grants: {{http: [\"https://route53.amazonaws.com\"], secrets: [AWS_KEY]}}\n    compensate:\n      uses: hello\n      with: {{name: 5}}\n"
    ));
    let m = messages(&check_steps(&w, &lookup));
    assert_eq!(
        m,
        vec!["12:20: `with.name` must be a string, found an integer"]
    );
}

#[test]
fn any_of_const_and_false_schemas() {
    let lookup = |_: &ComponentRef| {
        Some(StepSchema {
            input: json!({
                "type": "object",
                "properties": {
                    "target": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                    "version": {"const": 2},
                    "legacy": false,
                    "n": {"type": ["integer", "null"], "exclusiveMaximum": 10}
                }
            }),
            ..StepSchema::default()
        })
    };
    let ok = wf(
        "name: t\nsteps:\n  - id: a\n    uses: x\n    with: {target: [a, b], version: 2, n: null, extra: 1}\n",
    );
    assert!(check_steps(&ok, &lookup).is_empty());
    let bad = wf(
        "name: t\nsteps:\n  - id: a\n    uses: x\n    with: {target: 5, version: 3, legacy: 1, n: 10}\n",
    );
    let m = messages(&check_steps(&bad, &lookup));
    assert_eq!(
        m,
        [
            "5:20: `with.target` matches none of the allowed forms for step `a`",
            "5:32: `with.version` must be `2`, found `3`",
            "5:43: `with.legacy` is not allowed",
            "5:49: `with.n` must be less than 10, found 10",
        ]
    );
}

#[test]
fn http_grants_by_connection_name() {
    let w = wf(
        "name: t\nconnections:\n  admin: {url: \"http://127.0.0.1:9180\"}\n  dyn: {url: \"${{ inputs.u }}\"}\ninputs: {u: {type: string, default: 'http://x'}}\nsteps:\n  - {id: a, uses: x, grants: {http: [admin]}}\n  - {id: b, uses: x, grants: {http: [dyn]}}\n",
    );
    let warned = |detail: &'static str| -> Vec<String> {
        check_steps(&w, &needs_http(detail))
            .iter()
            .map(|d| d.message.split('`').nth(1).unwrap_or("").to_owned())
            .collect()
    };
    // `admin`'s URL is known: its origin is granted, nothing more. `dyn`'s is known only when
    // the step runs, so it is taken to allow anything.
    assert!(warned("http://127.0.0.1:9180/apisix/admin/routes").is_empty());
    assert_eq!(warned("http://127.0.0.1:9181/"), ["a"]);
}

/// A producer with typed outputs and a consumer with typed inputs, for `${{ }}` type checks.
fn typed_lookup(c: &ComponentRef) -> Option<StepSchema> {
    match c.builtin_name()? {
        "producer" => Some(StepSchema {
            input: json!({"type": "object"}),
            output: json!({
                "type": "object",
                "properties": {
                    "port": {"type": "integer"},
                    "host": {"type": "string"},
                    "ratio": {"type": "number"},
                    "ready": {"type": "boolean"},
                    "tags": {"type": "array"},
                    "either": {"type": ["integer", "string"]},
                    "alt": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "free": {},
                    "pinned": {"$ref": "#/$defs/port"}
                },
                "$defs": {"port": {"type": "integer"}}
            }),
            grants_needed: vec![],
        }),
        "sink" => Some(StepSchema {
            input: json!({
                "type": "object",
                "properties": {
                    "s": {"type": "string"},
                    "i": {"type": "integer"},
                    "n": {"type": "number"},
                    "b": {"type": "boolean"},
                    "l": {"type": "array", "items": {"type": "string"}},
                    "o": {"type": "object"},
                    "multi": {"type": ["string", "null"]},
                    "any": {"anyOf": [{"type": "string"}, {"type": "object"}]},
                    "untyped": {"description": "anything"}
                }
            }),
            output: json!({}),
            grants_needed: vec![],
        }),
        _ => lookup(c),
    }
}

/// Diagnostics for a consumer step `c` (`uses: sink`) with the given `with:` lines (indented
/// by 6), after a producer `a` and a matrix producer `m`. The first `with:` line is line 12.
fn typed(inputs: &str, with: &str) -> Vec<Diagnostic> {
    let yaml = format!(
        "name: t\nsteps:\n  - id: a\n    uses: producer\n  - id: m\n    uses: producer\n    strategy: {{matrix: {{r: [eu, us]}}}}\n  - id: c\n    uses: sink\n    needs: [a, m]\n    with:\n{with}inputs:\n{inputs}\n"
    );
    check_steps(&wf(&yaml), &typed_lookup)
}

const NO_INPUTS: &str = "  unused: {type: string, default: x}";

#[test]
fn an_output_of_the_wrong_type_is_an_error_before_the_run() {
    // The reported bug: `port` is declared an integer, `name` takes a string.
    let w = wf(&format!(
        "{HEAD}  - id: a\n    uses: producer\n  - id: b\n    uses: hello\n    needs: a\n    with:\n      name: \"${{{{ steps.a.outputs.port }}}}\"\n"
    ));
    let d = check_steps(&w, &typed_lookup);
    assert_eq!(
        messages(&d),
        ["12:13: `with.name` must be a string, but `steps.a.outputs.port` is an integer"]
    );
    assert!(d[0].is_error());
    let hint = d[0].hint.as_deref().unwrap_or_default();
    assert!(
        hint.contains("wrap it: `${{ format('{0}', steps.a.outputs.port) }}`"),
        "{hint}"
    );
    assert!(hint.contains("`host`"), "{hint}");
}

#[test]
fn matrix_output_forms_are_typed_too() {
    let d = typed(
        NO_INPUTS,
        "      s: ${{ steps.m.outputs.eu.port }}\n      i: ${{ steps.m.legs[0].outputs.host }}\n      b: ${{ steps.m.legs }}\n      n: ${{ steps.m.outputs['us'].ratio }}\n",
    );
    assert_eq!(
        messages(&d),
        [
            "12:10: `with.s` must be a string, but `steps.m.outputs.eu.port` is an integer",
            "13:10: `with.i` must be an integer, but `steps.m.legs[0].outputs.host` is a string",
            "14:10: `with.b` must be a boolean, but `steps.m.legs` is a list",
        ]
    );
    // The hint names the outputs that have the wanted type, and not a number for an integer.
    let hint = d[1].hint.as_deref().unwrap_or_default();
    assert!(
        hint.contains("that is an integer: `port`, `pinned`"),
        "{hint}"
    );
}

#[test]
fn inputs_literals_and_functions_are_typed() {
    let inputs = "  n: {type: number, default: 1}\n  on: {type: bool, default: true}\n  wait: {type: duration, default: 5m}\n  names: {type: list, default: [a]}\n  text: {type: string, default: x}";
    let d = typed(
        inputs,
        "      s: ${{ inputs.n }}\n      i: ${{ inputs.on }}\n      l: ${{ inputs.names }}\n      b: ${{ 'yes' }}\n      o: ${{ toJSON(inputs.names) }}\n      n: ${{ contains(inputs.names, 'a') }}\n      multi: ${{ 5 }}\n",
    );
    assert_eq!(
        messages(&d),
        [
            "12:10: `with.s` must be a string, but `inputs.n` is a number",
            "13:10: `with.i` must be an integer, but `inputs.on` is a boolean",
            "15:10: `with.b` must be a boolean, but `'yes'` is a string",
            "16:10: `with.o` must be a mapping, but `toJSON(inputs.names)` is a string",
            "17:10: `with.n` must be a number, but `contains(inputs.names, 'a')` is a boolean",
        ]
    );
    // A string where a number or boolean is wanted: fromJSON converts it.
    assert!(
        d[2].hint
            .as_deref()
            .unwrap_or_default()
            .contains("fromJSON('yes')"),
        "{:?}",
        d[2].hint
    );
    let ok = typed(
        inputs,
        "      s: ${{ inputs.wait }}\n      i: ${{ inputs.n }}\n      n: ${{ steps.a.outputs.port }}\n      b: ${{ !inputs.text }}\n      o: ${{ fromJSON(inputs.text) }}\n      l: ${{ inputs.names }}\n",
    );
    assert!(ok.is_empty(), "{:?}", messages(&ok));
}

#[test]
fn expression_type_checks_stay_conservative() {
    let d = typed(
        "  text: {type: string, default: x}",
        concat!(
            // A string with text around the expression is a string, whatever the expression is.
            "      s: \"port ${{ steps.a.outputs.port }}\"\n",
            "      i: ${{ steps.a.outputs.pinned }}\n",
            // Outputs whose type is a list of types, `anyOf` or missing are not known.
            "      b: ${{ steps.a.outputs.either }}\n",
            "      o: ${{ steps.a.outputs.alt }}\n",
            "      l: ${{ steps.a.outputs.free }}\n",
            // Inputs that take a list of types, `anyOf`, or no `type` accept any expression.
            "      multi: ${{ steps.a.outputs.port }}\n",
            "      any: ${{ steps.a.outputs.ready }}\n",
            "      untyped: ${{ steps.a.outputs.port }}\n",
            // An integer is a number, and a number may be an integer.
            "      n: ${{ steps.a.outputs.port }}\n",
        ),
    );
    assert!(d.is_empty(), "{:?}", messages(&d));
    // `&&` and `||` give one of their operands: known only when all have the same type.
    let d = typed(
        "  text: {type: string, default: x}",
        "      s: ${{ inputs.text || 'default' }}\n      i: ${{ steps.a.outputs.port || 'none' }}\n      n: ${{ steps.a.outputs.host && steps.a.outputs.ready }}\n      b: ${{ inputs.text || steps.a.outputs.host }}\n",
    );
    assert_eq!(
        messages(&d),
        [
            "15:10: `with.b` must be a boolean, but `inputs.text || steps.a.outputs.host` is a string"
        ]
    );
}

#[test]
fn compensate_with_expressions_are_typed() {
    let w = wf(
        "name: t\nsteps:\n  - id: a\n    uses: producer\n    compensate:\n      uses: sink\n      with: {i: \"${{ steps.a.outputs.host }}\"}\n",
    );
    assert_eq!(
        messages(&check_steps(&w, &typed_lookup)),
        ["7:17: `with.i` must be an integer, but `steps.a.outputs.host` is a string"]
    );
}

/// A lookup for one component `x` that needs http access to `detail`.
fn needs_http(detail: &'static str) -> impl Fn(&ComponentRef) -> Option<StepSchema> {
    move |_| {
        Some(StepSchema {
            grants_needed: vec![GrantRequest {
                kind: GrantKind::Http,
                detail: detail.into(),
            }],
            ..StepSchema::default()
        })
    }
}

/// Regression: validation read `*.` as exactly one label while the sandbox let it cover several,
/// so a grant that works at run time drew a warning.
#[test]
fn a_leading_wildcard_covers_several_labels_as_at_run_time() {
    let w = wf(
        "name: t\nsteps:\n  - id: a\n    uses: x\n    grants: {http: [\"https://*.amazonaws.com\"]}\n",
    );
    let lookup = needs_http("https://route53.us-east-1.amazonaws.com/2013-04-01/");
    let d = check_steps(&w, &lookup);
    assert!(d.is_empty(), "{:?}", messages(&d));
    let lookup = needs_http("https://amazonaws.com");
    assert_eq!(check_steps(&w, &lookup).len(), 1, "`*.` needs a label");
}

/// Regression: the hint of a missing http grant quoted the step's prose as a pattern, so the
/// snippet it suggested was not a valid grant.
#[test]
fn the_suggested_http_grant_parses_and_grants_the_need() {
    for detail in [
        "https://route53.amazonaws.com/2013-04-01/",
        "http://[::1]:8080",
        "http://127.0.0.1:9180/apisix/admin",
        "the probed URL's scheme://host:port",
        "the URL in `provider.route53.endpoint`",
    ] {
        let bare = "name: t\ninputs: {u: {}}\nsteps:\n  - id: a\n    uses: x\n    with: {provider: {route53: {endpoint: \"${{ inputs.u }}\"}}}\n";
        let lookup = needs_http(detail);
        let d = check_steps(&wf(bare), &lookup);
        assert_eq!(d.len(), 1, "{detail}: {:?}", messages(&d));
        let hint = d[0].hint.as_deref().unwrap_or("");
        let snippet = hint.split('`').nth(1).unwrap_or("");
        assert!(snippet.starts_with("grants:"), "{detail}: {hint}");
        let fixed = format!("{bare}    {snippet}\n");
        let w = crate::parse("w.yaml", &fixed)
            .unwrap_or_else(|e| panic!("{detail}: the suggested `{snippet}` is invalid:\n{e}"));
        let d = check_steps(&w, &lookup);
        assert!(d.is_empty(), "{detail}: {snippet}: {:?}", messages(&d));
    }
}

/// A need stated in terms of the step's input can only ask for some grant of its kind, and is
/// quoted as the prose it is.
#[test]
fn prose_needs_ask_for_some_grant_of_their_kind() {
    let lookup = |_: &ComponentRef| {
        Some(StepSchema {
            grants_needed: vec![GrantRequest {
                kind: GrantKind::Secret,
                detail: "the admin key named by `token_secret`".into(),
            }],
            ..StepSchema::default()
        })
    };
    let d = check_steps(
        &wf(
            "name: t\ninputs: {k: {}}\nsecrets: [K]\nsteps:\n  - id: a\n    uses: x\n    with: {token_secret: \"${{ inputs.k }}\"}\n",
        ),
        &lookup,
    );
    assert_eq!(
        messages(&d),
        [
            "6:11: step `a` (`uses: x`) needs secret access (the admin key named by `token_secret`), which its grants do not allow"
        ]
    );
    let granted = wf(
        "name: t\ninputs: {k: {}}\nsecrets: [K]\nsteps:\n  - id: a\n    uses: x\n    with: {token_secret: \"${{ inputs.k }}\"}\n    grants: {secrets: [K]}\n",
    );
    assert!(check_steps(&granted, &lookup).is_empty());
    // A step that does not give the input (and the schema no default) does not need it.
    let absent = wf("name: t\nsecrets: [K]\nsteps:\n  - id: a\n    uses: x\n");
    assert!(check_steps(&absent, &lookup).is_empty());
}

/// Schema for the needs tests: a secret name nested in `provider`, with a default.
fn needs_secret_by_input() -> impl Fn(&ComponentRef) -> Option<StepSchema> {
    |_| {
        Some(StepSchema {
            input: json!({
                "type": "object",
                "properties": {
                    "provider": {"$ref": "#/$defs/provider"},
                    "token_secret": {"type": "string"}
                },
                "$defs": {"provider": {"type": "object", "properties": {
                    "pdns": {"type": "object", "properties": {
                        "key_secret": {"type": "string", "default": "PDNS_API_KEY"}}}}}}
            }),
            grants_needed: vec![
                GrantRequest {
                    kind: GrantKind::Secret,
                    detail: "the API key named by `provider.pdns.key_secret`".into(),
                },
                GrantRequest {
                    kind: GrantKind::Secret,
                    detail: "the token named by `token_secret`, when given".into(),
                },
            ],
            ..StepSchema::default()
        })
    }
}

/// An input named by a need's prose is read from `with:` or the schema's default and checked
/// exactly; the hint is YAML that goes where the step's grants are.
#[test]
fn prose_needs_read_the_named_input_or_its_default() {
    let lookup = needs_secret_by_input();
    let head = "name: t\nsecrets: [PDNS_API_KEY, OTHER, TOK]\nsteps:\n  - id: a\n    uses: x\n";
    // The default applies: PDNS_API_KEY, exactly.
    let d = check_steps(
        &wf(&format!(
            "{head}    with: {{provider: {{pdns: {{}}}}}}\n    grants: {{secrets: [OTHER]}}\n"
        )),
        &lookup,
    );
    assert_eq!(
        messages(&d),
        [
            "5:11: step `a` (`uses: x`) needs secret access to `PDNS_API_KEY` (the API key named by `provider.pdns.key_secret`), which its grants do not allow"
        ]
    );
    assert!(d[0].is_error());
    assert_eq!(
        d[0].hint.as_deref(),
        Some(
            "add `PDNS_API_KEY` to the step's `grants.secrets` list; or, if the step does not use it with this input, add `optional: [secrets]` under the step's `grants:`"
        )
    );
    // A literal in `with:` overrides the default, and a given optional input applies.
    let d = check_steps(
        &wf(&format!(
            "{head}    with: {{provider: {{pdns: {{key_secret: OTHER}}}}, token_secret: TOK}}\n    grants: {{http: [\"http://x\"]}}\n"
        )),
        &lookup,
    );
    assert_eq!(d.len(), 2, "{:?}", messages(&d));
    assert!(d[0].message.contains("to `OTHER`"), "{:?}", messages(&d));
    assert!(d[1].message.contains("to `TOK`"), "{:?}", messages(&d));
    assert!(
        d[0].hint
            .as_deref()
            .unwrap()
            .starts_with("add `secrets: [OTHER]` under the step's `grants:`")
    );
    // No grants at all: the whole `grants:` to add, with the secret to declare.
    let d = check_steps(
        &wf("name: t\nsteps:\n  - id: a\n    uses: x\n    with: {provider: {pdns: {}}}\n"),
        &lookup,
    );
    assert_eq!(
        d[0].hint.as_deref(),
        Some(
            "add `PDNS_API_KEY` to the top-level `secrets:` list and add `grants: {secrets: [PDNS_API_KEY]}` to step `a`; or, if the step does not use it with this input, add `grants: {optional: [secrets]}` to step `a`"
        )
    );
    let ok = wf(&format!(
        "{head}    with: {{provider: {{pdns: {{}}}}}}\n    grants: {{secrets: [PDNS_API_KEY]}}\n"
    ));
    assert!(check_steps(&ok, &lookup).is_empty());
}

/// `grants.optional` waives a kind of need; listing a kind the component does not need is a
/// warning, and an unknown kind an error.
#[test]
fn optional_needs_are_marked_by_kind() {
    let lookup = needs_secret_by_input();
    let head = "name: t\nsteps:\n  - id: a\n    uses: x\n    with: {provider: {pdns: {}}}\n";
    let d = check_steps(
        &wf(&format!("{head}    grants: {{optional: [secrets]}}\n")),
        &lookup,
    );
    assert!(d.is_empty(), "{:?}", messages(&d));
    let d = check_steps(
        &wf(&format!("{head}    grants: {{optional: [secrets, sql]}}\n")),
        &lookup,
    );
    assert_eq!(
        messages(&d),
        ["6:34: `grants.optional` lists `sql`, but `x` declares no sql need"]
    );
    assert!(!d[0].is_error());
    let e = crate::parse(
        "w.yaml",
        &format!("{head}    grants: {{optional: [secret]}}\n"),
    )
    .unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("`secret` is not a grant kind that can be optional"),
        "{e}"
    );
    assert!(e.contains("did you mean `secrets`?"), "{e}");
}

/// Regression: the long form of `grants.http` keeps its patterns under `allow`, so the hint
/// must say so.
#[test]
fn the_http_hint_follows_the_long_form() {
    let w = wf(
        "name: t\nsteps:\n  - id: a\n    uses: x\n    grants: {http: {allow: [\"https://a.example\"]}}\n",
    );
    let d = check_steps(&w, &needs_http("https://b.example"));
    assert_eq!(
        d[0].hint.as_deref(),
        Some(
            "add `\"https://b.example\"` to the step's `grants.http.allow` list; or, if the step does not use it with this input, add `optional: [http]` under the step's `grants:`"
        )
    );
}
