use super::*;
use proptest::prelude::*;
use serde_json::json;

fn ctx() -> EvalContext {
    EvalContext {
        data: json!({
            "inputs": {"region": "EU", "count": 3, "flag": true, "list": ["a", "b"], "empty": ""},
            "vars": {"n": "10", "url": "http://x"},
            "steps": {"deploy": {"outputs": {"url": "http://eu", "n": 2}, "outcome": "success"},
                      "m": {"outputs": {"eu,blue": {"x": 1}}}},
            "matrix": {"region": "eu"},
            "secrets": {"TOKEN": "s3cr3t"},
            "run": {"id": "r1"}
        }),
        status: RunStatus::default(),
    }
}

fn ev(src: &str) -> Json {
    Expr::parse(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .eval(&ctx())
        .unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn perr(src: &str) -> ExprError {
    Expr::parse(src).expect_err(src)
}

#[test]
fn literals() {
    assert_eq!(ev("null"), json!(null));
    assert_eq!(ev("true"), json!(true));
    assert_eq!(ev("42"), json!(42));
    assert_eq!(ev("-1.5"), json!(-1.5));
    assert_eq!(ev("0xff"), json!(255));
    assert_eq!(ev("1e3"), json!(1000));
    assert_eq!(ev("'it''s'"), json!("it's"));
    assert_eq!(ev("''"), json!(""));
}

#[test]
fn property_and_index_access() {
    assert_eq!(ev("inputs.region"), json!("EU"));
    assert_eq!(ev("inputs['region']"), json!("EU"));
    assert_eq!(ev("inputs.list[1]"), json!("b"));
    assert_eq!(ev("inputs.list[1.7]"), json!("b"));
    assert_eq!(ev("inputs.list[5]"), json!(null));
    assert_eq!(ev("inputs.list[-1]"), json!(null));
    assert_eq!(ev("steps.deploy.outputs.url"), json!("http://eu"));
    assert_eq!(ev("steps.m.outputs['eu,blue'].x"), json!(1));
    assert_eq!(ev("inputs.missing.deeper"), json!(null));
    assert_eq!(ev("fromJSON('{\"a\":[1,2]}').a[1]"), json!(2));
    assert_eq!(ev("(inputs).region"), json!("EU"));
    assert_eq!(ev("inputs[inputs.list[0] == 'a' && 'region']"), json!("EU"));
}

#[test]
fn object_filters_map_and_flatten() {
    let c = EvalContext {
        data: json!({"steps": {"plan": {"legs": [
            {"key": "eu", "outputs": {"summary": {"delete": 0}, "events": [{"type": "update"}]}},
            {"key": "us", "outputs": {"summary": {"delete": 2}, "events": [{"type": "delete"}, {"type": "create"}]}},
            {"key": "ap", "outcome": "skipped"}
        ]}}}),
        status: RunStatus::default(),
    };
    let ev = |src: &str| Expr::parse(src).unwrap().eval(&c).unwrap();
    assert_eq!(ev("steps.plan.legs.*.key"), json!(["eu", "us", "ap"]));
    assert_eq!(
        ev("steps.plan.legs[*].outputs.summary.delete"),
        json!([0, 2])
    );
    assert_eq!(
        ev("steps.plan.legs.*.outputs.events.*.type"),
        json!(["update", "delete", "create"])
    );
    assert_eq!(
        ev("contains(steps.plan.legs.*.outputs.events.*.type, 'delete')"),
        json!(true)
    );
    assert_eq!(
        ev("steps.plan.legs.*.outputs.events[0].type"),
        json!(["update", "delete"])
    );
    assert_eq!(
        ev("steps.plan.*"),
        json!([[
            {"key": "eu", "outputs": {"summary": {"delete": 0}, "events": [{"type": "update"}]}},
            {"key": "us", "outputs": {"summary": {"delete": 2}, "events": [{"type": "delete"}, {"type": "create"}]}},
            {"key": "ap", "outcome": "skipped"}
        ]])
    );
    assert_eq!(ev("steps.nothing.*"), json!([]));
    assert_eq!(ev("steps.plan.legs[0].key.*"), json!([]));
}

#[test]
fn missing_context_data_is_null() {
    let c = EvalContext::default();
    assert_eq!(
        Expr::parse("matrix.x").unwrap().eval(&c).unwrap(),
        json!(null)
    );
}

#[test]
fn comparisons_are_loose() {
    assert_eq!(ev("inputs.region == 'eu'"), json!(true));
    assert_eq!(ev("inputs.region != 'eu'"), json!(false));
    assert_eq!(ev("vars.n == 10"), json!(true));
    assert_eq!(ev("'' == 0"), json!(true));
    assert_eq!(ev("null == 0"), json!(true));
    assert_eq!(ev("true == 1"), json!(true));
    assert_eq!(ev("'abc' == 1"), json!(false));
    assert_eq!(ev("'abc' != 1"), json!(true));
    assert_eq!(ev("inputs.count > 2"), json!(true));
    assert_eq!(ev("inputs.count <= 2"), json!(false));
    assert_eq!(ev("'a' < 'B'"), json!(true));
    assert_eq!(ev("'10' > 9"), json!(true));
    assert_eq!(ev("'x' < 1"), json!(false));
    assert_eq!(ev("'x' >= 1"), json!(false));
    assert_eq!(ev("inputs.list == inputs.list"), json!(true));
    assert_eq!(ev("inputs.list == 1"), json!(false));
    assert_eq!(ev("inputs.list < 1"), json!(false));
    assert_eq!(ev("1 < 2 == true"), json!(true));
    // Lists and objects: element by element under the same rules.
    assert_eq!(
        ev("fromJSON('[1.0, \"A\"]') == fromJSON('[1, \"a\"]')"),
        json!(true)
    );
    assert_eq!(
        ev("fromJSON('{\"k\": 2.0}') == fromJSON('{\"k\": 2}')"),
        json!(true)
    );
    assert_eq!(ev("fromJSON('[1, 2]') == fromJSON('[1]')"), json!(false));
    assert_eq!(
        ev("fromJSON('{\"K\": 1}') == fromJSON('{\"k\": 1}')"),
        json!(false)
    );
}

#[test]
fn logic_short_circuits_and_returns_operands() {
    assert_eq!(ev("inputs.region && 'x'"), json!("x"));
    assert_eq!(ev("inputs.empty && 'x'"), json!(""));
    assert_eq!(ev("inputs.empty || 'fallback'"), json!("fallback"));
    assert_eq!(ev("inputs.region || 'fallback'"), json!("EU"));
    assert_eq!(ev("!inputs.flag"), json!(false));
    assert_eq!(ev("!!inputs.region"), json!(true));
    assert_eq!(ev("false || null"), json!(null));
    // The right side is not evaluated: a failing fromJSON there does not error.
    assert_eq!(ev("false && fromJSON('nope')"), json!(false));
    assert_eq!(ev("true || fromJSON('nope')"), json!(true));
    assert_eq!(ev("true && false || true"), json!(true));
    assert_eq!(ev("!(1 == 1) || (2 > 1 && 'y')"), json!("y"));
}

#[test]
fn functions() {
    assert_eq!(ev("contains(inputs.list, 'A')"), json!(true));
    assert_eq!(ev("contains('Hello', 'ELL')"), json!(true));
    assert_eq!(ev("contains(inputs.list, 'z')"), json!(false));
    assert_eq!(ev("startsWith(vars.url, 'HTTP://')"), json!(true));
    assert_eq!(ev("endsWith(vars.url, '//y')"), json!(false));
    assert_eq!(ev("format('{0}-{1}-{0}', 'a', 2)"), json!("a-2-a"));
    assert_eq!(ev("format('{{literal}} {0}', 'x')"), json!("{literal} x"));
    assert_eq!(ev("join(inputs.list)"), json!("a,b"));
    assert_eq!(ev("join(inputs.list, ' + ')"), json!("a + b"));
    assert_eq!(ev("join('solo', '-')"), json!("solo"));
    assert_eq!(ev("toJSON(inputs.list)"), json!("[\n  \"a\",\n  \"b\"\n]"));
    assert_eq!(ev("fromJSON('[1, true]')"), json!([1, true]));
    assert_eq!(ev("STARTSWITH('abc', 'a')"), json!(true));
}

#[test]
fn function_errors_at_run_time() {
    let e = |s: &str| Expr::parse(s).unwrap().eval(&ctx()).unwrap_err().0;
    assert!(e("format('{1}', 'a')").contains("argument {1} is missing"));
    assert!(e("format('{x}', 'a')").contains("not an argument index"));
    assert!(e("format('{0', 'a')").contains("unclosed"));
    assert!(e("format('}', 'a')").contains("unmatched"));
    assert!(e("fromJSON('{')").contains("not valid JSON"));
}

#[test]
fn status_functions() {
    let mut c = ctx();
    let e = |s: &str, c: &EvalContext| Expr::parse(s).unwrap().eval(c).unwrap();
    assert_eq!(e("success()", &c), json!(true));
    assert_eq!(e("failure()", &c), json!(false));
    c.status.failed = true;
    assert_eq!(e("success()", &c), json!(false));
    assert_eq!(e("failure()", &c), json!(true));
    assert_eq!(e("always()", &c), json!(true));
    c.status.cancelled = true;
    assert_eq!(e("cancelled()", &c), json!(true));
    assert!(
        Expr::parse("always() && inputs.x")
            .unwrap()
            .uses_status_function()
    );
    assert!(!Expr::parse("inputs.x").unwrap().uses_status_function());
    assert_eq!(
        Expr::parse("1 || failure()")
            .unwrap()
            .status_function_offset(),
        Some(5)
    );
}

#[test]
fn parse_errors_point_at_the_problem() {
    let e = perr("inputs.a == ");
    assert_eq!(e.offset, 12);
    assert!(e.message.contains("found nothing"), "{e:?}");
    let e = perr("inputz.a");
    assert_eq!(
        (e.offset, e.message.as_str()),
        (0, "unknown context `inputz`")
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `inputs`?"));
    let e = perr("1 == 1 && contain(inputs.list, 'a')");
    assert_eq!(e.offset, 10);
    assert_eq!(e.hint.as_deref(), Some("did you mean `contains`?"));
    let e = perr("contains('a')");
    assert!(e.message.contains("takes 2 arguments, got 1"));
    let e = perr("inputs.a = 'x'");
    assert_eq!(e.offset, 9);
    assert_eq!(e.hint.as_deref(), Some("use `==` to compare"));
    let e = perr("\"x\"");
    assert!(e.hint.unwrap().contains("single quotes"));
    let e = perr("'abc");
    assert!(e.message.contains("unterminated string"));
    let e = perr("inputs.a inputs.b");
    assert_eq!(e.offset, 9);
    let e = perr("(1 == 1");
    assert!(e.message.contains("expected `)`"));
    let e = perr("steps.*.");
    assert!(e.message.contains("property name"), "{e}");
    let e = perr("inputs.list[*");
    assert!(e.message.contains("expected `]`"), "{e}");
    let e = perr("inputs.");
    assert!(e.message.contains("property name"));
    let e = perr("");
    assert_eq!(e.message, "empty expression");
    let e = perr("- 1");
    assert!(e.message.contains("unexpected `-`"));
    let e = perr("12abc");
    assert!(e.message.contains("invalid number"));
    let e = perr("1e999");
    assert!(e.message.contains("out of range"));
}

#[test]
fn braces_around_a_whole_expression_are_optional() {
    let e = Expr::parse("  ${{ inputs.count > 1 }}").unwrap();
    assert_eq!(e.eval(&ctx()).unwrap(), json!(true));
    let err = perr("${{ inputs.count > }}");
    assert_eq!(err.offset, 19);
    // Two interpolations are not one expression.
    assert!(Expr::parse("${{ a }} == ${{ b }}").is_err());
}

#[test]
fn dashes_in_names() {
    let c = EvalContext {
        data: json!({"steps": {"my-step": {"outputs": {"the-url": "u"}}}}),
        status: RunStatus::default(),
    };
    let e = Expr::parse("steps.my-step.outputs.the-url").unwrap();
    assert_eq!(e.eval(&c).unwrap(), json!("u"));
    // A property may start with a digit after a dot.
    let e = Expr::parse("steps.x.outputs.0a").unwrap();
    assert_eq!(e.references()[0].path[3], "0a");
}

#[test]
fn references_and_offsets() {
    let src = "steps.deploy.outputs['url'] == inputs.region && matrix[inputs.k].z";
    let refs = Expr::parse(src).unwrap().references();
    let paths: Vec<Vec<&str>> = refs
        .iter()
        .map(|r| r.path.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        paths,
        vec![
            vec!["steps", "deploy", "outputs", "url"],
            vec!["inputs", "region"],
            vec!["matrix"],
            vec!["inputs", "k"],
        ]
    );
    assert_eq!(
        &src[refs[0].offset..refs[0].offset + refs[0].len],
        "steps.deploy.outputs['url']"
    );
    assert_eq!(
        &src[refs[1].offset..refs[1].offset + refs[1].len],
        "inputs.region"
    );
    assert_eq!(
        &src[refs[3].offset..refs[3].offset + refs[3].len],
        "inputs.k"
    );
    let refs = Expr::parse("format('{0}', steps.a.outputs.x)")
        .unwrap()
        .references();
    assert_eq!(refs[0].path, vec!["steps", "a", "outputs", "x"]);
    let refs = Expr::parse("inputs.list[0]").unwrap().references();
    assert_eq!(refs[0].path, vec!["inputs", "list", "0"]);
}

#[test]
fn templates() {
    let t = Template::parse("plain text").unwrap();
    assert!(t.is_literal());
    assert_eq!(t.eval(&ctx()).unwrap(), json!("plain text"));
    let t = Template::parse("${{ inputs.count }}").unwrap();
    assert!(t.is_single_expr());
    assert_eq!(t.eval(&ctx()).unwrap(), json!(3));
    let t = Template::parse("n=${{ inputs.count }}, r=${{inputs.region}}!").unwrap();
    assert_eq!(t.eval(&ctx()).unwrap(), json!("n=3, r=EU!"));
    let t = Template::parse("${{ inputs.list }} ${{ null }}|").unwrap();
    assert_eq!(t.eval(&ctx()).unwrap(), json!("[\"a\",\"b\"] |"));
    let t = Template::parse("${{ '}}' }}").unwrap();
    assert_eq!(t.eval(&ctx()).unwrap(), json!("}}"));
    let t = Template::parse("a ${{ 1.5 }} ${{ 2.0 }}").unwrap();
    assert_eq!(t.eval(&ctx()).unwrap(), json!("a 1.5 2"));
    assert_eq!(t.raw(), "a ${{ 1.5 }} ${{ 2.0 }}");
}

#[test]
fn template_errors_and_references_use_raw_offsets() {
    let raw = "x ${{ inputs.a }} y ${{ steps.b.outputs.c }}";
    let t = Template::parse(raw).unwrap();
    let refs = t.references();
    assert_eq!(
        &raw[refs[0].offset..refs[0].offset + refs[0].len],
        "inputs.a"
    );
    assert_eq!(
        &raw[refs[1].offset..refs[1].offset + refs[1].len],
        "steps.b.outputs.c"
    );
    let e = Template::parse("ok ${{ inputs.a }} ${{ inputz.b }}").unwrap_err();
    assert_eq!(e.offset, 23);
    let e = Template::parse("abc ${{ inputs.a").unwrap_err();
    assert_eq!(
        (e.offset, e.message.as_str()),
        (4, "unterminated `${{`: missing `}}`")
    );
    let e = Template::parse("a ${{ }} b").unwrap_err();
    assert_eq!((e.offset, e.message.as_str()), (2, "empty `${{ }}`"));
    let t = Template::parse("${{ success() }}").unwrap();
    assert_eq!(t.status_function_offset(), Some(4));
}

#[test]
fn limits_stop_deep_nesting() {
    let deep = "(".repeat(100) + "1" + &")".repeat(100);
    assert!(perr(&deep).message.contains("nests more than"));
    let nots = "!".repeat(1000) + "true";
    assert!(perr(&nots).message.contains("nests more than"));
    let chain = vec!["1"; 2000].join(" == ");
    assert!(perr(&chain).message.contains("too deeply nested"));
    let ors = vec!["inputs.a"; 1000].join(" || ");
    assert_eq!(
        Expr::parse(&ors).unwrap().eval(&ctx()).unwrap(),
        json!(null)
    );
    let long = "1".repeat(MAX_EXPR_LEN + 1);
    assert!(perr(&long).message.contains("longer than"));
    let idx = "inputs".to_string() + &"[0]".repeat(3000);
    // Thousands of accessors are fine: they are a flat list.
    assert_eq!(
        Expr::parse(&idx).unwrap().eval(&ctx()).unwrap(),
        json!(null)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn expr_parse_and_eval_never_panic(s in "\\PC{0,80}") {
        if let Ok(e) = Expr::parse(&s) {
            let _ = e.eval(&ctx());
            let _ = e.references();
            let _ = e.uses_status_function();
        }
    }

    #[test]
    fn template_parse_and_eval_never_panic(s in "(\\PC|\\$\\{\\{|\\}\\}|'){0,60}") {
        if let Ok(t) = Template::parse(&s) {
            let _ = t.eval(&ctx());
            for r in t.references() {
                prop_assert!(r.offset + r.len <= s.len());
            }
        } else if let Err(e) = Template::parse(&s) {
            prop_assert!(e.offset <= s.len());
        }
    }

    #[test]
    fn grammar_shaped_input_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("inputs"), Just("."), Just("region"), Just("("), Just(")"), Just("["),
                Just("]"), Just("'s'"), Just("1"), Just("-2.5"), Just("=="), Just("!="),
                Just("<"), Just(">="), Just("&&"), Just("||"), Just("!"), Just(","),
                Just("contains"), Just("format"), Just("fromJSON"), Just("success"),
                Just("null"), Just(" "), Just("steps"), Just("*"),
            ],
            0..60,
        )
    ) {
        let s: String = parts.concat();
        if let Ok(e) = Expr::parse(&s) {
            let _ = e.eval(&ctx());
            for r in e.references() {
                prop_assert!(r.offset + r.len <= s.len());
            }
        } else if let Err(e) = Expr::parse(&s) {
            prop_assert!(e.offset <= s.len());
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash(n in 60usize..3000, open in prop_oneof![Just("("), Just("!"), Just("contains(1,"), Just("inputs[")]) {
        let s = open.repeat(n) + "1";
        let _ = Expr::parse(&s);
    }
}
