//! Records, roles, weights, health and errors against the fake Route 53.

use super::*;

#[test]
fn apply_creates_checks_and_records_then_is_idempotent() {
    let h = Harness::new();
    let out = h.run(&input(json!({}))).unwrap();
    assert_eq!(out.active, ["eu-west-1"]);
    assert_eq!(out.order, ["eu-west-1", "us-east-1"]);
    assert_eq!(
        out.changes
            .iter()
            .filter(|c| c.kind == "health-check")
            .count(),
        2
    );
    assert_eq!(
        out.changes
            .iter()
            .filter(|c| c.kind == "record" && c.op == ChangeOp::Create)
            .count(),
        2
    );
    assert_eq!(out.change_id.as_deref(), Some("C1"));
    assert!(out.synced && !out.planned && out.undo.is_none());
    assert_eq!(out.status["eu-west-1"], Health::Healthy);
    {
        let r53 = h.r53.borrow();
        let primary = r53
            .records
            .iter()
            .find(|r| r.failover.as_deref() == Some("PRIMARY"))
            .unwrap();
        assert_eq!(primary.set_identifier.as_deref(), Some("eu-west-1"));
        assert_eq!(primary.health_check_id.as_deref(), Some("hc-1"));
    }

    let again = h.run(&input(json!({}))).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(again.change_id, None);
    assert_eq!(
        h.r53.borrow().checks.len(),
        2,
        "health checks are reused by caller reference"
    );
    assert_eq!(h.r53.borrow().changes, 1);
}

#[test]
fn failover_swaps_roles_in_one_batch_and_compensation_swaps_back() {
    let h = Harness::new();
    h.run(&input(json!({}))).unwrap();
    let fo = input(json!({"action": "failover", "target_region": "us-east-1"}));
    let out = h.run(&fo).unwrap();
    assert_eq!(out.active, ["us-east-1"]);
    assert_eq!(out.changes.iter().filter(|c| c.kind == "record").count(), 2);
    assert!(out.changes.iter().all(|c| c.op == ChangeOp::Update));
    assert_eq!(
        out.undo.as_ref().unwrap().target_region.as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(h.r53.borrow().changes, 2, "the swap is one atomic batch");

    // Retrying the same failover is a no-op.
    assert!(h.run(&fo).unwrap().changes.is_empty());

    let env_http = h.transport();
    let env = Env {
        http: &env_http,
        secrets: &h.secrets,
        clock: &h.clock,
        log: &NoLog,
    };
    let back = crate::compensate(&env, &fo, out.undo.as_ref())
        .unwrap()
        .unwrap();
    assert_eq!(back.active, ["eu-west-1"]);
    assert!(
        crate::compensate(&env, &input(json!({})), None)
            .unwrap()
            .is_none()
    );
}

#[test]
fn unhealthy_primary_is_not_active() {
    let h = Harness::new();
    h.run(&input(json!({}))).unwrap();
    h.r53.borrow_mut().checks[0].2 = false;
    let st = h.run(&input(json!({"action": "status"}))).unwrap();
    assert_eq!(st.status["eu-west-1"], Health::Unhealthy);
    assert_eq!(st.active, ["us-east-1"]);
    assert!(st.changes.is_empty());
}

#[test]
fn weighted_and_set_weights() {
    let h = Harness::new();
    let w = input(json!({"policy": "weighted", "regions": [
        {"name": "eu-west-1", "endpoint": "203.0.113.10", "weight": 70},
        {"name": "us-east-1", "endpoint": "198.51.100.20", "weight": 30},
        {"name": "ap-south-1", "endpoint": "192.0.2.30", "weight": 0}
    ]}));
    let out = h.run(&w).unwrap();
    assert_eq!(out.active, ["eu-west-1", "us-east-1"]);
    assert!(
        h.r53.borrow().checks.is_empty(),
        "no health check requested"
    );
    let mut sw = w.clone();
    sw.action = GslbAction::SetWeights;
    sw.weights = Some(BTreeMap::from([("eu-west-1".to_string(), 0)]));
    let out = h.run(&sw).unwrap();
    assert_eq!(
        out.weights,
        BTreeMap::from([
            ("ap-south-1".to_string(), 0),
            ("eu-west-1".to_string(), 0),
            ("us-east-1".to_string(), 30)
        ])
    );
    assert_eq!(out.changes.len(), 1);
    assert_eq!(out.undo.unwrap().weights.unwrap()["eu-west-1"], 70);
    assert_eq!(out.active, ["us-east-1"]);
}

#[test]
fn latency_records_carry_the_aws_region() {
    let h = Harness::new();
    let mut l = input(json!({"policy": "latency"}));
    l.regions[1].location = Some("us-east-2".into());
    h.run(&l).unwrap();
    let regions: Vec<_> = h
        .r53
        .borrow()
        .records
        .iter()
        .map(|r| r.region.clone().unwrap())
        .collect();
    assert_eq!(regions, ["eu-west-1", "us-east-2"]);
    l.regions[0].location = Some("europe".into());
    assert!(matches!(h.run(&l), Err(StepError::InvalidInput(m)) if m.contains("location")));
}

#[test]
fn waits_for_insync_within_the_timeout() {
    let h = Harness::new();
    h.r53.borrow_mut().pending_polls = 3;
    let t0 = h.clock.now_unix_ms();
    let out = h.run(&input(json!({}))).unwrap();
    assert!(out.synced);
    // Three PENDING polls and one INSYNC, with the delay doubling from 1 s.
    assert_eq!(h.clock.now_unix_ms() - t0, 1_000 + 2_000 + 4_000 + 8_000);

    let h = Harness::new();
    h.r53.borrow_mut().pending_polls = 1_000;
    let e = h.run(&input(json!({"timeout_ms": 5_000}))).unwrap_err();
    assert!(
        matches!(&e, StepError::Retryable(m) if m.contains("not INSYNC after 5000 ms")),
        "{e:?}"
    );

    let h = Harness::new();
    h.r53.borrow_mut().pending_polls = 1_000;
    let out = h.run(&input(json!({"wait": false}))).unwrap();
    assert!(!out.synced);
}

#[test]
fn errors_are_classified() {
    let h = Harness::new();
    h.r53.borrow_mut().fail_next = Some((400, "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>".into()));
    assert!(
        matches!(h.run(&input(json!({}))), Err(StepError::Retryable(m)) if m.contains("Throttling"))
    );

    h.r53.borrow_mut().fail_next = Some((400, "<ErrorResponse><Error><Code>PriorRequestNotComplete</Code><Message>busy</Message></Error></ErrorResponse>".into()));
    assert!(matches!(
        h.run(&input(json!({}))),
        Err(StepError::Retryable(_))
    ));

    h.r53.borrow_mut().fail_next = Some((403, "<ErrorResponse><Error><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>".into()));
    let e = h.run(&input(json!({}))).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("AWS_ACCESS_KEY_ID")),
        "{e:?}"
    );

    h.r53.borrow_mut().fail_next = Some((503, "Service Unavailable".into()));
    assert!(matches!(
        h.run(&input(json!({}))),
        Err(StepError::Retryable(_))
    ));

    let mut missing = input(json!({}));
    missing.provider.route53.as_mut().unwrap().hosted_zone_id = Some("/hostedzone/ZX".into());
    let e = h.run(&missing).unwrap_err();
    assert!(
        matches!(&e, StepError::Fatal(m) if m.contains("example.com.") && m.contains("NoSuchHostedZone")),
        "{e:?}"
    );

    let fail_connect =
        FakeTransport::new(|_| Err(meridian_sdk::http::HttpError::Connect("refused".into())));
    assert!(matches!(
        h.run_with(&fail_connect, &input(json!({}))),
        Err(StepError::Retryable(_))
    ));

    let no_secret = Harness {
        secrets: MapSecrets::default(),
        ..Harness::new()
    };
    assert!(
        matches!(no_secret.run(&input(json!({}))), Err(StepError::Fatal(m)) if m.contains("AWS_ACCESS_KEY_ID"))
    );
}

#[test]
fn input_limits_specific_to_route53() {
    let h = Harness::new();
    let three = input(json!({"regions": [
        {"name": "a", "endpoint": "192.0.2.1"}, {"name": "b", "endpoint": "192.0.2.2"}, {"name": "c", "endpoint": "192.0.2.3"}
    ]}));
    assert!(matches!(h.run(&three), Err(StepError::InvalidInput(m)) if m.contains("exactly two")));
    let mut none = input(json!({}));
    none.provider.route53 = None;
    assert!(
        matches!(h.run(&none), Err(StepError::InvalidInput(m)) if m.contains("provider.route53"))
    );
}

#[test]
fn plan_mode_reads_but_records_writes() {
    let h = Harness::new();
    let plan = PlanTransport::new(h.transport());
    let out = h.run_with(&plan, &input(json!({}))).unwrap();
    assert!(out.planned && !out.synced);
    assert_eq!(out.changes.len(), 4, "2 health checks + 2 records intended");
    let planned = plan.planned();
    assert_eq!(
        planned.len(),
        3,
        "2 CreateHealthCheck + 1 ChangeResourceRecordSets"
    );
    let batch = String::from_utf8(planned[2].body.clone().unwrap()).unwrap();
    assert!(
        batch.contains("<HealthCheckId>planned:meridian-"),
        "{batch}"
    );
    assert!(h.r53.borrow().records.is_empty() && h.r53.borrow().checks.is_empty());
}

/// A simple record or a CNAME at the managed name: refused before any change, in a plan too
/// (Route 53 refuses routing-policy records beside either; the step said nothing and its batch
/// failed mid-failover).
#[test]
fn a_simple_record_or_a_cname_at_the_name_is_refused_before_any_change() {
    for (rtype, id, value) in [
        ("A", None, "10.9.9.9"),
        ("CNAME", None, "elsewhere.example.net."),
    ] {
        let h = Harness::new();
        h.r53.borrow_mut().records.push(RecordSet {
            name: "api.example.com.".into(),
            rtype: rtype.into(),
            set_identifier: id,
            weight: None,
            region: None,
            failover: None,
            ttl: Some(60),
            values: vec![value.into()],
            health_check_id: None,
            alias: false,
        });
        let e = h.run(&input(json!({}))).unwrap_err().to_string();
        assert!(e.contains(value) && e.contains("delete"), "{rtype}: {e}");
        assert_eq!(h.r53.borrow().changes, 0, "{rtype}: nothing changed");
    }
}
