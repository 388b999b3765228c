//! Plan mode is enforced by the host: reads pass, writes are recorded, not performed.

use meridian_sandbox::{Call, Capabilities, HttpPolicy, PlannedChange, Preopen};
use serde_json::json;

use crate::server::Server;
use crate::support::{inv, load, plan_inv, sandbox, test_pg};

#[tokio::test]
async fn http_writes_are_recorded_not_sent() {
    let server = Server::start();
    let mut caps = Capabilities {
        http: HttpPolicy::allowing([server.origin()]),
        ..Capabilities::default()
    };
    caps.secrets.insert("k".into(), "127.0.0.1:9".into()); // appears in the body: must be masked in the plan
    let c = load(meridian_artifacts::HTTP_WRITER);
    let out = sandbox()
        .invoke(
            &c,
            Call::run(plan_inv(json!({"base": server.url("")})), caps),
        )
        .await
        .unwrap();

    let ex = out.output["exchanges"].as_array().unwrap();
    assert_eq!(ex[0]["status"], 200);
    assert_eq!(ex[0]["recorded"], false, "GET goes through");
    for e in &ex[1..] {
        assert_eq!(
            (
                e["status"].as_u64(),
                e["recorded"].as_bool(),
                e["body"].as_str()
            ),
            (Some(202), Some(true), Some("{}"))
        );
    }
    let seen: Vec<String> = server.seen().into_iter().map(|s| s.method).collect();
    assert_eq!(seen, ["GET"], "only the read reached the server");

    assert_eq!(out.plan.len(), 3);
    let PlannedChange::Http {
        method,
        url,
        body_json,
        ..
    } = &out.plan[0]
    else {
        panic!("{:?}", out.plan[0])
    };
    assert_eq!(method, "POST");
    assert_eq!(url, &server.url("/routes"));
    assert_eq!(
        body_json.as_ref().unwrap()["upstream"]["nodes"],
        json!({"***": 1})
    );
    let methods: Vec<&str> = out
        .plan
        .iter()
        .map(|p| match p {
            PlannedChange::Http { method, .. } => method.as_str(),
            PlannedChange::Sql { .. } => "sql",
        })
        .collect();
    assert_eq!(methods, ["POST", "PUT", "DELETE"]);
    // The plan is serialisable for the journal and the CLI.
    let j = serde_json::to_value(&out.plan[1]).unwrap();
    assert_eq!(
        (j["kind"].as_str(), j["method"].as_str()),
        (Some("http"), Some("PUT"))
    );
}

#[tokio::test]
async fn http_writes_are_sent_in_apply_mode() {
    let server = Server::start();
    let caps = Capabilities {
        http: HttpPolicy::allowing([server.origin()]),
        ..Capabilities::default()
    };
    let c = load(meridian_artifacts::HTTP_WRITER);
    let out = sandbox()
        .invoke(&c, Call::run(inv(json!({"base": server.url("")})), caps))
        .await
        .unwrap();
    assert!(out.plan.is_empty());
    let seen: Vec<String> = server.seen().into_iter().map(|s| s.method).collect();
    assert_eq!(seen, ["GET", "POST", "PUT", "DELETE"]);
    assert_eq!(
        out.output["exchanges"][2]["body"]
            .as_str()
            .unwrap()
            .split(' ')
            .next(),
        Some("PUT")
    );
}

#[tokio::test]
async fn preopens_are_read_only_in_plan_mode() {
    let dir = tempfile::tempdir().unwrap();
    let caps = Capabilities {
        fs: vec![Preopen {
            host: dir.path().to_owned(),
            guest: "/work".into(),
            writable: true,
        }],
        ..Capabilities::default()
    };
    let c = load(meridian_artifacts::FS_WRITER);
    let out = sandbox()
        .invoke(
            &c,
            Call::run(
                plan_inv(json!({"path": "/work/x.txt", "content": "x"})),
                caps,
            ),
        )
        .await
        .unwrap();
    assert_ne!(out.output["write"], "ok");
    assert!(!dir.path().join("x.txt").exists());
}

#[tokio::test]
async fn sql_writes_are_recorded_and_reads_run() {
    let Some(pg) = test_pg("sql_writes_are_recorded_and_reads_run") else {
        return;
    };
    let table = format!("meridian_plan_test_{}", std::process::id());
    let mut caps = Capabilities::default();
    caps.sql.insert("db".into(), pg.dsn());
    let c = load(meridian_artifacts::SQL_WRITER);

    // Apply: create the table with one row.
    let setup = json!({"connection": "db", "statements": [
        format!("DROP TABLE IF EXISTS {table}"),
        format!("CREATE TABLE {table} (id int primary key, v text)"),
        format!("INSERT INTO {table} VALUES (1, 'one')"),
    ]});
    let out = sandbox()
        .invoke(&c, Call::run(inv(setup), caps.clone()))
        .await
        .unwrap();
    assert_eq!(out.output["executed"], json!(["ok 0", "ok 0", "ok 1"]));

    // Plan: writes recorded, reads answered, nothing changed.
    let planned = json!({"connection": "db",
        "statements": [
            format!("INSERT INTO {table} VALUES (2, 'two')"),
            format!("UPDATE {table} SET v = 'uno'"),
            format!("SELECT * FROM {table}"),
            "VACUUM".to_owned(),
            "SELECT pg_promote()".to_owned(),
            format!("SELEC broken FROM {table}"),
        ],
        "queries": [format!("SELECT id, v FROM {table}"), format!("INSERT INTO {table} VALUES (3, 'x') RETURNING id")],
    });
    let out = sandbox()
        .invoke(&c, Call::run(plan_inv(planned), caps.clone()))
        .await
        .unwrap();
    let executed = out.output["executed"].as_array().unwrap();
    assert_eq!(
        &executed[..5],
        &[
            json!("ok 0"),
            json!("ok 0"),
            json!("ok 1"),
            json!("ok 0"),
            json!("ok 0")
        ]
    );
    assert!(
        executed[5].as_str().unwrap().contains("42601"),
        "syntax errors still surface in plan mode: {}",
        executed[5]
    );
    assert_eq!(out.output["queried"][0], json!([{"id": 1, "v": "one"}]));
    assert_eq!(out.output["queried"][1], json!([]));
    let recorded: Vec<(&str, &str)> = out
        .plan
        .iter()
        .map(|p| match p {
            PlannedChange::Sql {
                statement, reason, ..
            } => (statement.as_str(), reason.as_str()),
            PlannedChange::Http { .. } => panic!("unexpected http change"),
        })
        .collect();
    assert_eq!(recorded.len(), 5, "{recorded:#?}");
    assert!(recorded[0].0.starts_with("INSERT") && recorded[0].1.contains("25006"));
    assert!(recorded[1].0.starts_with("UPDATE"));
    assert!(
        recorded[2].0 == "VACUUM" && recorded[2].1.contains("25001"),
        "{:?}",
        recorded[2]
    );
    assert!(recorded[3].1.contains("pg_promote"));
    assert!(recorded[4].0.contains("RETURNING"));

    // Nothing was written.
    let check =
        json!({"connection": "db", "queries": [format!("SELECT id, v FROM {table} ORDER BY id")]});
    let out = sandbox()
        .invoke(&c, Call::run(inv(check), caps.clone()))
        .await
        .unwrap();
    assert_eq!(out.output["queried"][0], json!([{"id": 1, "v": "one"}]));
    let cleanup = json!({"connection": "db", "statements": [format!("DROP TABLE {table}")]});
    sandbox()
        .invoke(&c, Call::run(inv(cleanup), caps))
        .await
        .unwrap();
}
