//! TLS to PostgreSQL, as libpq's connection strings say (`sslmode`, `sslrootcert`): a step's
//! SQL grant and the PostgreSQL journal, against a server that accepts TLS only.

use std::os::unix::fs::MetadataExt;

use crate::support::{Scratch, expect_code, test_certificates};

/// A PostgreSQL server with a certificate from the test's CA that refuses connections without
/// TLS: a step's connection with `sslmode=verify-full` and the CA reads back that its session is
/// encrypted; the journal on it works; `sslmode=disable` is refused by the server and a CA the
/// server's certificate does not chain to is refused by the client.
#[test]
fn steps_and_the_journal_reach_postgresql_over_verified_tls() {
    let s = Scratch::new();
    let Some(pg) = crate::distributed::postgres(&s) else {
        return;
    };
    test_certificates(s.path());
    let other = s.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    test_certificates(&other);
    // The server's key and certificate, owned by the user the cluster runs as.
    let owner = std::fs::metadata(&pg.data_dir).unwrap();
    for (from, to) in [("cert.pem", "server.crt"), ("key.pem", "server.key")] {
        let dest = pg.data_dir.join(to);
        std::fs::copy(s.path().join(from), &dest).unwrap();
        std::os::unix::fs::chown(&dest, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    std::fs::write(
        pg.data_dir.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
    )
    .unwrap();
    pg.psql("ALTER SYSTEM SET ssl = on;").unwrap();
    pg.psql("SELECT pg_reload_conf();").unwrap();
    pg.psql("CREATE DATABASE meridian;").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));

    let ca = s.path().join("ca.pem");
    let dsn = |db: &str, ssl: &str| format!("{} {ssl}", pg.dsn(db));
    s.kitchen_sink();
    let wf = |ssl: &str| {
        format!(
            "name: tls\nconnections:\n  db: {{postgres: \"{}\"}}\nsteps:\n  - id: q\n    uses: ./kitchen_sink.wasm\n    with:\n      ops: [{{op: sql, connection: db, statement: \"SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()\"}}]\n    grants: {{sql: [db]}}\n",
            dsn("postgres", ssl)
        )
    };
    s.write(
        "ok.yaml",
        &wf(&format!("sslmode=verify-full sslrootcert={}", ca.display())),
    );
    let (out, _) = expect_code(&s.run(&["--json", "run", "ok.yaml"]), 0);
    assert!(
        out.contains(r#""ssl": true"#),
        "the session is not encrypted: {out}"
    );

    // Without TLS the server refuses; with a CA it does not chain to, the client does (the
    // kitchen sink reports a failed operation as its result).
    s.write("plain.yaml", &wf("sslmode=disable"));
    let (out, _) = expect_code(&s.run(&["--json", "run", "plain.yaml"]), 0);
    assert!(
        out.contains("no encryption") && !out.contains(r#""ssl": true"#),
        "{out}"
    );
    s.write(
        "wrong.yaml",
        &wf(&format!(
            "sslmode=verify-full sslrootcert={}",
            other.join("ca.pem").display()
        )),
    );
    let (out, _) = expect_code(&s.run(&["--json", "run", "wrong.yaml"]), 0);
    assert!(
        out.contains("certificate") && !out.contains(r#""ssl": true"#),
        "{out}"
    );

    // The journal (schema, runs) over the same verified TLS.
    let store = format!(
        "postgres://postgres@127.0.0.1:{}/meridian?sslmode=verify-full&sslrootcert={}",
        pg.port,
        ca.display()
    );
    let (out, err) = expect_code(&s.run(&["--store", &store, "--json", "runs", "list"]), 0);
    assert_eq!(out.trim(), "[]", "{err}");
}
