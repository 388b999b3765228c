//! Shared helpers: a sandbox per test, invocations, the guest components.

use std::sync::{Arc, OnceLock};

use meridian_sandbox::{
    Call, Capabilities, Invocation, Mode, Sandbox, SandboxConfig, StepComponent,
};

/// One sandbox (and compile cache) shared by the tests of this binary: compiling each guest once
/// keeps the suite fast on 2 cores. Tests that need their own sandbox make one.
pub(crate) fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        // A persistent compile cache: later runs of this binary skip Cranelift entirely.
        let dir = std::env::temp_dir().join("meridian-sandbox-test-cache");
        Sandbox::new(SandboxConfig {
            cache_dir: Some(dir),
            ..Default::default()
        })
        .expect("sandbox")
    })
}

pub(crate) fn load(path: &str) -> Arc<StepComponent> {
    sandbox()
        .load_file(std::path::Path::new(path), None)
        .expect("load component")
}

pub(crate) fn inv(input: serde_json::Value) -> Invocation {
    Invocation {
        run_id: "run-1".into(),
        step_id: "step-1".into(),
        attempt: 1,
        idempotency_key: "run-1/step-1".into(),
        mode: Mode::Apply,
        input,
    }
}

pub(crate) fn plan_inv(input: serde_json::Value) -> Invocation {
    Invocation {
        mode: Mode::Plan,
        ..inv(input)
    }
}

pub(crate) fn run(input: serde_json::Value) -> Call {
    Call::run(inv(input), Capabilities::default())
}

/// After a hostile guest failed, a normal step in the same sandbox must still work.
pub(crate) async fn assert_still_healthy() {
    let hello = load(meridian_artifacts::HELLO);
    let out = sandbox()
        .invoke(&hello, run(serde_json::json!({"name": "after"})))
        .await
        .expect("sandbox still healthy");
    assert_eq!(out.output["greeting"], "Hello, after!");
}

/// A PostgreSQL for one SQL test: MERIDIAN_TEST_PG if set, else a throwaway cluster started
/// here when PostgreSQL's binaries are installed, else `None` (with a notice: the test skips).
pub(crate) enum TestPg {
    External(String),
    Own(PgCluster),
}

impl TestPg {
    pub(crate) fn dsn(&self) -> String {
        match self {
            TestPg::External(dsn) => dsn.clone(),
            TestPg::Own(c) => c.dsn.clone(),
        }
    }
}

pub(crate) fn test_pg(test: &str) -> Option<TestPg> {
    if let Ok(dsn) = std::env::var("MERIDIAN_TEST_PG")
        && !dsn.trim().is_empty()
    {
        return Some(TestPg::External(dsn));
    }
    match PgCluster::start() {
        Ok(c) => Some(TestPg::Own(c)),
        Err(why) => {
            // Written to the real stderr (the harness captures only `eprintln!`), so the skip shows.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {why}; set MERIDIAN_TEST_PG to a PostgreSQL DSN to run SQL tests"
            );
            None
        }
    }
}

/// A PostgreSQL cluster in a temporary directory on a free loopback port, stopped (immediate
/// shutdown) and deleted on drop. initdb refuses root, so as root it runs as user `postgres`.
pub(crate) struct PgCluster {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    as_postgres: bool,
    pub(crate) dsn: String,
}

impl PgCluster {
    fn find_bin() -> Option<std::path::PathBuf> {
        let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .collect();
        dirs.sort();
        dirs.pop()
    }

    fn command(&self, tool: &str) -> std::process::Command {
        let mut c = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            std::process::Command::new(self.bin.join(tool))
        };
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    }

    fn start() -> Result<Self, String> {
        let err = |e: std::io::Error| e.to_string();
        let bin = Self::find_bin().ok_or("no PostgreSQL binaries under /usr/lib/postgresql")?;
        let dir = tempfile::Builder::new()
            .prefix("meridian-sandbox-pg")
            .tempdir()
            .map_err(err)?;
        // Running as root shows as root owning the directory just created.
        let as_postgres =
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(dir.path()).map_err(err)?) == 0;
        if as_postgres {
            let out = std::process::Command::new("id")
                .args(["-u", "postgres"])
                .output()
                .map_err(err)?;
            let uid: u32 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|_| "no `postgres` user to run initdb as")?;
            std::os::unix::fs::chown(dir.path(), Some(uid), None).map_err(err)?;
        }
        // Below the ephemeral range, so no client connection takes it before PostgreSQL binds it.
        let port = meridian_lab::free_port();
        let cluster = Self {
            dsn: format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
            dir,
            bin,
            as_postgres,
        };
        let data = cluster.dir.path().join("data");
        let status = cluster
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .status()
            .map_err(err)?;
        if !status.success() {
            return Err(format!("initdb failed ({status})"));
        }
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            cluster.dir.path().display()
        );
        let status = cluster
            .command("pg_ctl")
            .args(["-w", "-t", "30", "-o", &opts, "-l"])
            .arg(cluster.dir.path().join("log"))
            .arg("-D")
            .arg(&data)
            .arg("start")
            .status()
            .map_err(err)?;
        if !status.success() {
            return Err(format!("pg_ctl start failed ({status})"));
        }
        Ok(cluster)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-m", "immediate", "-w", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .status();
    }
}
