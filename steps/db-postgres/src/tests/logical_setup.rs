//! `setup-logical`: create, refresh, what blocks it, table lists.

use super::*;

#[derive(Default)]
struct LogicalState {
    publication: Shared<bool>,
    all_tables: Shared<bool>,
    subscription: Shared<bool>,
    enabled: Shared<bool>,
    stale_slot: Shared<bool>,
    wal_level: Shared<String>,
    missing_on_subscriber: Shared<Vec<String>>,
}

fn logical_fake(st: Arc<LogicalState>) -> Fake {
    st.wal_level.replace("logical".into());
    Fake::new(move |s| match (s.conn.as_str(), s.sql.as_str()) {
        ("eu", logical::SQL_PUBLISHER) => Ok(row(
            &["wal_level", "in_recovery"],
            vec![t(&st.wal_level.get()), Value::Bool(false)],
        )),
        ("eu", logical::SQL_PUBLICATION) => Ok(if st.publication.get() {
            row(&["all_tables"], vec![Value::Bool(st.all_tables.get())])
        } else {
            none()
        }),
        ("eu", logical::SQL_PUBLICATION_TABLES | logical::SQL_ALL_TABLES) => Ok(Rows {
            columns: vec!["qname".into()],
            rows: vec![vec![t("public.gw_config")], vec![t("public.routes")]],
        }),
        ("eu", logical::SQL_RESOLVE_TABLE) => match &s.params[0] {
            Value::Text(q) if q == "\"gw_config\"" => {
                Ok(row(&["qname"], vec![t("public.gw_config")]))
            }
            _ => Ok(none()),
        },
        ("eu", "CREATE PUBLICATION \"api7_pub\" FOR ALL TABLES") => {
            st.publication.set(true);
            st.all_tables.set(true);
            Ok(none())
        }
        ("eu", "ALTER PUBLICATION \"api7_pub\" SET TABLE public.gw_config") => Ok(none()),
        ("eu", logical::SQL_SLOT) => Ok(if st.stale_slot.get() {
            row(&["active"], vec![Value::Bool(false)])
        } else {
            none()
        }),
        ("us", logical::SQL_SUBSCRIBER) => Ok(row(&["in_recovery"], vec![Value::Bool(false)])),
        ("us", logical::SQL_MISSING_TABLES) => {
            assert_eq!(s.params[1], t("\n"));
            Ok(Rows {
                columns: vec!["qname".into()],
                rows: st
                    .missing_on_subscriber
                    .get()
                    .iter()
                    .map(|m| vec![t(m)])
                    .collect(),
            })
        }
        ("us", logical::SQL_SUBSCRIPTION) => Ok(if st.subscription.get() {
            row(
                &["enabled", "has_publication"],
                vec![Value::Bool(st.enabled.get()), Value::Bool(true)],
            )
        } else {
            none()
        }),
        ("us", sql)
            if sql.starts_with(
                "CREATE SUBSCRIPTION \"api7_sub\" CONNECTION 'host=10.0.0.1 password=s3cret'",
            ) =>
        {
            st.subscription.set(true);
            st.enabled.set(true);
            Ok(none())
        }
        ("us", "ALTER SUBSCRIPTION \"api7_sub\" ENABLE") => {
            st.enabled.set(true);
            Ok(none())
        }
        ("us", "ALTER SUBSCRIPTION \"api7_sub\" REFRESH PUBLICATION") => Ok(none()),
        _ => unscripted(s),
    })
}

fn logical_args() -> serde_json::Value {
    serde_json::json!({"action": "setup-logical", "connection": "eu", "standby": "us", "publication": "api7_pub",
                       "subscription": "api7_sub", "publisher_dsn_secret": "PUB_DSN"})
}

#[test]
fn setup_logical_creates_then_refreshes_and_never_shows_the_dsn() {
    let st = Arc::new(LogicalState::default());
    let fake = logical_fake(Arc::clone(&st));
    let out = run(&fake, Mode::Apply, logical_args()).unwrap();
    assert_eq!(
        (out.publication_created, out.subscription_created),
        (Some(true), Some(true))
    );
    assert_eq!(out.tables, ["public.gw_config", "public.routes"]);
    assert_eq!(out.changes.len(), 2);
    assert!(
        out.changes[1].contains("CONNECTION '***'"),
        "{}",
        out.changes[1]
    );
    assert!(!serde_json::to_string(&out).unwrap().contains("s3cret"));
    let checked = fake
        .sent()
        .iter()
        .find(|s| s.sql == logical::SQL_MISSING_TABLES)
        .map(|s| s.params[0].clone());
    assert_eq!(
        checked,
        Some(t("public.gw_config\npublic.routes")),
        "the subscriber is checked for every published table"
    );

    // Second run: nothing to create; the subscription is refreshed. A disabled one is enabled.
    st.enabled.set(false);
    let out = run(&fake, Mode::Apply, logical_args()).unwrap();
    assert_eq!(
        (out.publication_created, out.subscription_created),
        (Some(false), Some(false))
    );
    assert_eq!(out.subscription_refreshed, Some(true));
    assert_eq!(
        out.changes,
        [
            "us: ALTER SUBSCRIPTION \"api7_sub\" ENABLE",
            "us: ALTER SUBSCRIPTION \"api7_sub\" REFRESH PUBLICATION"
        ]
    );
}

#[test]
fn setup_logical_explains_what_blocks_it() {
    type Setup = fn(&LogicalState);
    let cases: [(&str, Setup, serde_json::Value); 6] = [
        (
            "wal_level = replica",
            |st| drop(st.wal_level.replace("replica".into())),
            logical_args(),
        ),
        (
            "lacks published table(s) public.routes",
            |st| st.missing_on_subscriber.set(vec!["public.routes".into()]),
            logical_args(),
        ),
        (
            "already has a replication slot `api7_sub`",
            |st| st.stale_slot.set(true),
            logical_args(),
        ),
        ("publisher_dsn_for_subscriber: needed", |_| {}, {
            let mut a = logical_args();
            a.as_object_mut().unwrap().remove("publisher_dsn_secret");
            a
        }),
        (
            "exists FOR ALL TABLES, but `tables` lists",
            |st| {
                st.publication.set(true);
                st.all_tables.set(true)
            },
            {
                let mut a = logical_args();
                a["tables"] = serde_json::json!(["gw_config"]);
                a
            },
        ),
        ("table `nope` does not exist on the publisher", |_| {}, {
            let mut a = logical_args();
            a["tables"] = serde_json::json!(["nope"]);
            a
        }),
    ];
    for (needle, setup, args) in cases {
        let st = Arc::new(LogicalState::default());
        let fake = logical_fake(Arc::clone(&st));
        setup(&st);
        let e = run(&fake, Mode::Apply, args).unwrap_err();
        assert!(e.message().contains(needle), "{needle}: {}", e.message());
        assert!(
            fake.executed().is_empty(),
            "{needle}: nothing may change before every check passed"
        );
    }
}

#[test]
fn setup_logical_aligns_a_table_list() {
    let st = Arc::new(LogicalState::default());
    st.publication.set(true);
    let fake = logical_fake(Arc::clone(&st));
    let mut args = logical_args();
    args["tables"] = serde_json::json!(["gw_config"]);
    st.subscription.set(true);
    st.enabled.set(true);
    let out = run(&fake, Mode::Apply, args).unwrap();
    assert_eq!(
        out.changes[0],
        "eu: ALTER PUBLICATION \"api7_pub\" SET TABLE public.gw_config"
    );
}
