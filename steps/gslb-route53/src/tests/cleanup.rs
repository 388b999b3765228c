//! What a change leaves behind: replaced health checks, removed regions, plan-mode deletions.

use super::*;

fn with_path(mut i: GslbInput, path: &str) -> GslbInput {
    for r in &mut i.regions {
        r.health_check.as_mut().unwrap().path = path.to_owned();
    }
    i
}

fn deleted(out: &meridian_families::gslb::GslbOutput, kind: &str) -> Vec<String> {
    out.changes
        .iter()
        .filter(|c| c.kind == kind && c.op == ChangeOp::Delete)
        .map(|c| c.name.clone())
        .collect()
}

/// Regression: a changed health-check setting used to create new checks and leave the old ones
/// behind (billed on AWS). The new check is created, the record switched to it, and only then is
/// the old one deleted (the fake refuses to delete a check a record still uses).
#[test]
fn changed_health_check_settings_replace_the_old_checks() {
    let h = Harness::new();
    h.run(&input(json!({}))).unwrap();
    let old: Vec<String> = h.r53.borrow().checks.iter().map(|c| c.0.clone()).collect();
    assert_eq!(old.len(), 2);

    let changed = with_path(input(json!({})), "/healthz");
    let out = h.run(&changed).unwrap();
    {
        let r53 = h.r53.borrow();
        assert_eq!(r53.checks.len(), 2, "{:?}", r53.checks);
        assert!(r53.checks.iter().all(|c| !old.contains(&c.0)));
        for rec in &r53.records {
            let id = rec.health_check_id.as_deref().unwrap();
            assert!(r53.checks.iter().any(|c| c.0 == id), "{rec:?}");
        }
        assert_eq!(r53.deleted_checks, old);
    }
    let gone = deleted(&out, "health-check");
    assert_eq!(gone.len(), 2, "{:?}", out.changes);
    assert!(
        old.iter()
            .all(|id| gone.iter().any(|g| g.contains(id.as_str())))
    );
    assert!(deleted(&out, "record").is_empty());

    let again = h.run(&changed).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(h.r53.borrow().checks.len(), 2);

    // Back to the first settings: their deleted checks' references cannot be used again.
    h.clock.sleep_ms(1);
    let back = h.run(&input(json!({}))).unwrap();
    assert_eq!(
        deleted(&back, "health-check").len(),
        2,
        "{:?}",
        back.changes
    );
    assert_eq!(h.r53.borrow().checks.len(), 2);
}

/// Regression: a region dropped from the input used to keep its record and its health check.
/// Its record goes in the same change batch, its check right after.
#[test]
fn a_removed_region_loses_its_record_and_check() {
    let h = Harness::new();
    let hc = json!({"type": "https", "port": 7085});
    let three = input(json!({"policy": "weighted", "regions": [
        {"name": "eu-west-1", "endpoint": "203.0.113.10", "weight": 50, "health_check": hc},
        {"name": "us-east-1", "endpoint": "198.51.100.20", "weight": 50, "health_check": hc},
        {"name": "ap-south-1", "endpoint": "192.0.2.30", "weight": 0, "health_check": hc}
    ]}));
    h.run(&three).unwrap();
    let ap_check = {
        let r53 = h.r53.borrow();
        assert_eq!((r53.records.len(), r53.checks.len()), (3, 3));
        r53.records
            .iter()
            .find(|r| r.set_identifier.as_deref() == Some("ap-south-1"))
            .unwrap()
            .health_check_id
            .clone()
            .unwrap()
    };

    let mut two = three.clone();
    two.regions.pop();
    let out = h.run(&two).unwrap();
    {
        let r53 = h.r53.borrow();
        let ids: Vec<_> = r53
            .records
            .iter()
            .map(|r| r.set_identifier.clone().unwrap())
            .collect();
        assert_eq!(ids, ["eu-west-1", "us-east-1"]);
        assert_eq!(r53.checks.len(), 2);
        assert_eq!(r53.deleted_checks, std::slice::from_ref(&ap_check));
        assert_eq!(r53.changes, 2, "the record goes in one batch");
    }
    assert_eq!(deleted(&out, "record").len(), 1, "{:?}", out.changes);
    assert!(deleted(&out, "record")[0].contains("[ap-south-1]"));
    assert_eq!(deleted(&out, "health-check").len(), 1);
    assert!(deleted(&out, "health-check")[0].contains(&ap_check));

    let again = h.run(&two).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(h.r53.borrow().changes, 2);
}

#[test]
fn plan_mode_records_the_deletions() {
    let h = Harness::new();
    h.run(&input(json!({}))).unwrap();
    let old: Vec<String> = h.r53.borrow().checks.iter().map(|c| c.0.clone()).collect();
    let plan = PlanTransport::new(h.transport());
    let out = h
        .run_with(&plan, &with_path(input(json!({})), "/healthz"))
        .unwrap();
    assert!(out.planned);
    assert_eq!(deleted(&out, "health-check").len(), 2, "{:?}", out.changes);
    let deletes: Vec<String> = plan
        .planned()
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.url.clone())
        .collect();
    assert_eq!(
        deletes,
        old.iter()
            .map(|id| format!("http://r53.test/2013-04-01/healthcheck/{id}"))
            .collect::<Vec<_>>()
    );
    let r53 = h.r53.borrow();
    assert_eq!(r53.checks.len(), 2);
    assert!(r53.deleted_checks.is_empty());
}

#[test]
fn only_meridians_checks_of_this_record_are_unused() {
    let i = input(json!({}));
    let ours = crate::record_reference("Z1", &i);
    let mut other = i.clone();
    other.record = "www.example.com".into();
    let theirs = crate::record_reference("Z1", &other);
    let hc = |id: &str, reference: String| crate::xml::HealthCheck {
        id: id.into(),
        caller_reference: reference,
    };
    let existing = [
        hc("kept", format!("{ours}aa-1")),
        hc("replaced", format!("{ours}bb-1")),
        hc("other-record", format!("{theirs}aa-1")),
        hc("legacy-used", format!("meridian-{}", "0".repeat(40))),
        hc("legacy-unused", format!("meridian-{}", "1".repeat(40))),
        hc("by-hand", "console-1".into()),
    ];
    let used = BTreeMap::from([
        ("replaced", "eu-west-1"),
        ("legacy-used", "us-east-1"),
        ("by-hand", "us-east-1"),
    ]);
    let keep = std::collections::BTreeSet::from(["kept"]);
    assert_eq!(
        crate::unused_checks(&existing, &ours, &used, &keep),
        [
            ("replaced".to_owned(), Some("eu-west-1".to_owned())),
            ("legacy-used".to_owned(), Some("us-east-1".to_owned())),
        ]
    );
}
