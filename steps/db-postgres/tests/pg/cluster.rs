//! Real PostgreSQL 15 clusters for the tests, on loopback and free ports, stopped on drop.
//!
//! initdb refuses to run as root, so when the test runs as root every PostgreSQL command runs
//! as user `postgres` (`runuser -u postgres --`) in a directory handed to that user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// Whether the PostgreSQL binaries exist; without them the tests fail with the install command,
/// unless `MERIDIAN_ALLOW_SKIP=1` (then they print a notice and pass).
pub(crate) fn available() -> bool {
    if Path::new(BIN).join("initdb").exists() {
        return true;
    }
    if std::env::var("MERIDIAN_ALLOW_SKIP").as_deref() == Ok("1") {
        eprintln!("SKIPPED: PostgreSQL 15 not found at {BIN} (MERIDIAN_ALLOW_SKIP=1)");
        return false;
    }
    panic!(
        "PostgreSQL 15 not found at {BIN}: run `apt-get install -y postgresql-15` (or set MERIDIAN_ALLOW_SKIP=1)"
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_command(program: &str) -> Command {
    let path = Path::new(BIN).join(program);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn check(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A port nobody listens on right now.
pub(crate) use meridian_families::testing::free_port;

/// One running cluster; `Drop` stops it (`-m immediate`) and removes its directory.
pub(crate) struct Cluster {
    pub(crate) name: String,
    pub(crate) port: u16,
    dir: PathBuf,
    data: PathBuf,
    running: bool,
}

impl Cluster {
    fn scratch(name: &str) -> (PathBuf, PathBuf) {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "meridian-db-postgres-test-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster dir");
        if is_root() {
            check(
                "chown",
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir)
                    .output(),
            );
        }
        let data = dir.join("data");
        (dir, data)
    }

    fn settings(&self) -> String {
        format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nwal_level = logical\n\
             max_wal_senders = 10\nmax_replication_slots = 10\nwal_log_hints = on\nfsync = off\n",
            self.port,
            self.dir.display()
        )
    }

    fn append_conf(&self) {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        f.write_all(self.settings().as_bytes())
            .expect("write postgresql.conf");
    }

    /// A fresh primary (`initdb -A trust`, wal_level logical, replication allowed from loopback).
    pub(crate) fn primary(name: &str) -> Cluster {
        let (dir, data) = Self::scratch(name);
        let mut c = Cluster {
            name: name.to_owned(),
            port: free_port(),
            dir,
            data,
            running: false,
        };
        check(
            "initdb",
            pg_command("initdb")
                .args(["-U", "postgres", "-A", "trust", "-D"])
                .arg(&c.data)
                .output(),
        );
        c.append_conf();
        use std::io::Write as _;
        let mut hba = std::fs::OpenOptions::new()
            .append(true)
            .open(c.data.join("pg_hba.conf"))
            .expect("open pg_hba.conf");
        hba.write_all(b"host replication all 127.0.0.1/32 trust\n")
            .expect("write pg_hba.conf");
        c.start();
        c
    }

    /// A physical standby of `primary`, streaming through slot `slot` (`pg_basebackup -R -C`).
    pub(crate) fn standby(primary: &Cluster, name: &str, slot: &str) -> Cluster {
        let (dir, data) = Self::scratch(name);
        let mut c = Cluster {
            name: name.to_owned(),
            port: free_port(),
            dir,
            data,
            running: false,
        };
        check(
            "pg_basebackup",
            pg_command("pg_basebackup")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &primary.port.to_string(),
                    "-U",
                    "postgres",
                    "-X",
                    "stream",
                    "-R",
                    "-C",
                    "-S",
                    slot,
                    "-D",
                ])
                .arg(&c.data)
                .output(),
        );
        // The copied postgresql.conf carries the primary's port; later lines win.
        c.append_conf();
        c.start();
        c
    }

    /// `pg_ctl start -w`.
    pub(crate) fn start(&mut self) {
        check(
            &format!("pg_ctl start ({})", self.name),
            pg_command("pg_ctl")
                .args(["-w", "-t", "60", "-D"])
                .arg(&self.data)
                .arg("-l")
                .arg(self.dir.join("postgres.log"))
                .arg("start")
                .output(),
        );
        self.running = true;
    }

    /// `pg_ctl stop -m immediate`: a crash, as when a region dies.
    pub(crate) fn kill(&mut self) {
        if self.running {
            let _ = pg_command("pg_ctl")
                .args(["-w", "-m", "immediate", "-D"])
                .arg(&self.data)
                .arg("stop")
                .output();
            self.running = false;
        }
    }

    /// The DSN the test host maps the connection name to.
    pub(crate) fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
            self.port
        )
    }

    /// Runs `sql` (simple protocol) as the superuser and returns the rows as text.
    pub(crate) fn sql(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&self.dsn(), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect to {}: {e}", self.name));
            let driver = tokio::spawn(conn);
            let msgs = client
                .simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("{} on {}: {e}", sql, self.name));
            drop(client);
            let _ = driver.await;
            msgs.into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                    }
                    _ => None,
                })
                .collect()
        })
    }

    /// The single value `sql` returns.
    pub(crate) fn value(&self, sql: &str) -> Option<String> {
        self.sql(sql)
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
    }

    /// Polls `sql` until it returns `want`, for at most `limit`.
    pub(crate) fn wait_for(&self, sql: &str, want: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            let got = self.value(sql);
            if got.as_deref() == Some(want) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{}: `{sql}` is {got:?}, not {want:?} after {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking()
            && let Ok(log) = std::fs::read_to_string(self.dir.join("postgres.log"))
        {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- {} log tail ---\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
