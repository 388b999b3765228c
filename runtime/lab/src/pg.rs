//! Real PostgreSQL 15 clusters on loopback: primaries, physical standbys, stop/start/kill.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::error::LabError;
use crate::process::{ServiceUser, Supervised, absolute, create_dir, find_binary, run_checked};

const PG_INSTALL: &str = "apt-get install -y postgresql-15";

/// How long a cluster may take to accept connections (crash recovery after `-m immediate`
/// included). Generous because two cores are shared with parallel builds.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a shutdown may take before the harness falls back to SIGKILL of the process group.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// How a cluster is stopped; the names and semantics are those of `pg_ctl stop -m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopMode {
    /// Roll back open transactions, disconnect clients, write a shutdown checkpoint (SIGINT).
    Fast,
    /// Quit without a checkpoint, as a crash would; the next start runs crash recovery (SIGQUIT).
    Immediate,
}

/// The directory holding the PostgreSQL 15 server binaries: `$MERIDIAN_PG_BIN`, else Debian's
/// `/usr/lib/postgresql/15/bin`, else the directory of `initdb` on `PATH`.
pub fn pg_bin_dir() -> Result<PathBuf, LabError> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("MERIDIAN_PG_BIN") {
        candidates.push(PathBuf::from(dir));
    }
    candidates.push(PathBuf::from("/usr/lib/postgresql/15/bin"));
    let initdb = find_binary("initdb", &candidates, PG_INSTALL)?;
    Ok(initdb
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".")))
}

/// A PostgreSQL cluster started by the harness, listening on `127.0.0.1:port`.
///
/// The postmaster is a direct child (no `pg_ctl` daemonizing), leader of its own process group, so
/// dropping the value — also during a panic — stops it (immediate shutdown, then SIGKILL of the whole
/// group after a grace period) and leaves no backend behind. When the harness runs as root the
/// server runs as user `postgres` (initdb refuses root).
///
/// Layout under the directory given at start: `data/` (PGDATA), `postgres.log`, and the Unix
/// socket. Cost: initdb ≈ 1–2 s, start ≈ 0.3 s, a standby's base backup ≈ 1 s for an empty cluster.
#[derive(Debug)]
pub struct PgCluster {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// PGDATA.
    pub data_dir: PathBuf,
    /// The cluster's own directory (parent of `data_dir`, holds the socket).
    pub dir: PathBuf,
    /// Where the server's stderr goes.
    pub log_file: PathBuf,
    bin: PathBuf,
    user: Option<ServiceUser>,
    server: Option<Supervised>,
}

impl PgCluster {
    /// Initializes and starts a primary in `dir` (created if missing; `dir/data` must not exist).
    ///
    /// Settings: trust authentication, `wal_level=logical`, `wal_log_hints=on` (so `pg_rewind`
    /// works), 10 WAL senders and slots, `hot_standby=on`, listening on 127.0.0.1 only, the Unix
    /// socket inside `dir`, and `fsync=off`: the lab simulates process crashes, not power loss, and
    /// fsync costs seconds on a shared CI disk. pg_hba allows replication from 127.0.0.1/32.
    pub fn start_primary(dir: &Path, port: u16) -> Result<PgCluster, LabError> {
        Self::start_primary_with_log(dir, port, None)
    }

    /// [`start_primary`](Self::start_primary) with the server log at `log_file` instead of
    /// `dir/postgres.log` (the lab keeps every log under one `logs/` directory).
    pub fn start_primary_with_log(
        dir: &Path,
        port: u16,
        log_file: Option<&Path>,
    ) -> Result<PgCluster, LabError> {
        let mut pg = Self::prepare(dir, port, log_file)?;
        if pg.data_dir.join("PG_VERSION").exists() {
            return Err(LabError::Invalid(format!(
                "{} already holds a cluster; start_primary initializes a new one",
                pg.data_dir.display()
            )));
        }
        let mut initdb = pg.command("initdb");
        initdb
            .arg("-D")
            .arg(&pg.data_dir)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        run_checked(initdb, None)?;
        append(
            &pg.data_dir.join("postgresql.conf"),
            "\n# meridian-lab\n\
             listen_addresses = '127.0.0.1'\n\
             wal_level = logical\n\
             wal_log_hints = on\n\
             max_wal_senders = 10\n\
             max_replication_slots = 10\n\
             hot_standby = on\n\
             fsync = off\n\
             max_connections = 50\n\
             shared_buffers = 32MB\n\
             log_line_prefix = '%m [%p] '\n",
        )?;
        // initdb -A trust already allows local replication; the explicit line documents the need
        // and survives a pg_hba template change.
        append(
            &pg.data_dir.join("pg_hba.conf"),
            "\nhost replication all 127.0.0.1/32 trust\n",
        )?;
        pg.start()?;
        Ok(pg)
    }

    /// Creates a physical standby of `primary` in `dir` with
    /// `pg_basebackup -R -X stream -C -S <slot>` and starts it; it streams from the primary through
    /// the replication slot `slot`. An existing inactive slot of that name on the primary is
    /// dropped first, so rebuilding a standby under the same name works.
    pub fn start_standby(
        primary: &PgCluster,
        dir: &Path,
        port: u16,
        slot: &str,
    ) -> Result<PgCluster, LabError> {
        Self::start_standby_with_log(primary, dir, port, slot, None)
    }

    /// [`start_standby`](Self::start_standby) with an explicit log file.
    pub fn start_standby_with_log(
        primary: &PgCluster,
        dir: &Path,
        port: u16,
        slot: &str,
        log_file: Option<&Path>,
    ) -> Result<PgCluster, LabError> {
        Self::standby_from_port(primary.port, dir, port, slot, log_file)
    }

    /// Creates and starts a standby of whichever cluster listens on `127.0.0.1:primary_port`.
    /// Used when the primary is not owned by the caller (e.g. rebuilding a former primary in the
    /// lab). `dir/data` is removed first if it exists.
    pub fn standby_from_port(
        primary_port: u16,
        dir: &Path,
        port: u16,
        slot: &str,
        log_file: Option<&Path>,
    ) -> Result<PgCluster, LabError> {
        if slot.is_empty()
            || !slot
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(LabError::Invalid(format!(
                "replication slot name {slot:?}: use lower-case letters, digits and _"
            )));
        }
        let mut pg = Self::prepare(dir, port, log_file)?;
        if pg.data_dir.exists() {
            std::fs::remove_dir_all(&pg.data_dir)
                .map_err(|e| LabError::io(format!("removing {}", pg.data_dir.display()), e))?;
        }
        let drop_slot = format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = '{slot}' AND NOT active;"
        );
        run_checked(pg.psql_command(primary_port, "postgres"), Some(&drop_slot))?;
        let mut backup = pg.command("pg_basebackup");
        backup
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(primary_port.to_string())
            .arg("-D")
            .arg(&pg.data_dir)
            .args([
                "-R",
                "-X",
                "stream",
                "-C",
                "-S",
                slot,
                "-c",
                "fast",
                "--no-sync",
            ]);
        run_checked(backup, None)?;
        pg.start()?;
        Ok(pg)
    }

    /// Common set-up: binaries, service user, directory ownership and reachability.
    fn prepare(dir: &Path, port: u16, log_file: Option<&Path>) -> Result<PgCluster, LabError> {
        let bin = pg_bin_dir()?;
        let user = ServiceUser::for_service("postgres", PG_INSTALL)?;
        let dir = absolute(dir)?;
        create_dir(&dir)?;
        if let Some(u) = &user {
            u.ensure_traversable(&dir)?;
            u.chown(&dir)?;
        }
        let log_file = match log_file {
            Some(p) => absolute(p)?,
            None => dir.join("postgres.log"),
        };
        Ok(PgCluster {
            port,
            data_dir: dir.join("data"),
            dir,
            log_file,
            bin,
            user,
            server: None,
        })
    }

    /// A command for PostgreSQL tool `tool`, run as the service user in `dir`.
    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.current_dir(&self.dir);
        if let Some(u) = &self.user {
            u.apply(&mut cmd);
        }
        cmd
    }

    /// A psql command (as the caller; trust auth) reading SQL from stdin, unaligned, tuples only,
    /// stopping at the first error. Statements are bounded by a 120 s statement timeout.
    fn psql_command(&self, port: u16, db: &str) -> Command {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .arg("-p")
        .arg(port.to_string())
        .args(["-U", "postgres", "-d", db, "-f", "-"])
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGOPTIONS", "-c statement_timeout=120000");
        cmd
    }

    /// `host=127.0.0.1 port=… user=postgres dbname=…`, a libpq/tokio-postgres DSN.
    pub fn dsn(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server
            .as_ref()
            .filter(|s| s.is_running())
            .map(Supervised::pid)
    }

    /// Whether the postmaster is running (it may still be starting up).
    pub fn is_running(&self) -> bool {
        self.server.as_ref().is_some_and(Supervised::is_running)
    }

    /// Whether the data directory starts as a standby (`standby.signal`).
    pub fn is_standby_on_disk(&self) -> bool {
        self.data_dir.join("standby.signal").exists()
    }

    /// Makes the cluster start read-only, as `db-postgres fence` would (`ALTER SYSTEM SET
    /// default_transaction_read_only = on`, written before the start so no session ever
    /// writes; `ALTER SYSTEM RESET` undoes it).
    pub fn fence_on_disk(&self) -> Result<(), LabError> {
        let path = self.data_dir.join("postgresql.auto.conf");
        append(&path, "default_transaction_read_only = 'on'\n")
    }

    /// Starts the server (no-op when it already runs) and waits until it accepts connections.
    /// Fails with the tail of the log if it exits or is not ready within 90 s.
    pub fn start(&mut self) -> Result<(), LabError> {
        if self.is_running() {
            return Ok(());
        }
        let mut cmd = self.command("postgres");
        // Port and socket directory on the command line, which outranks postgresql.conf and
        // postgresql.auto.conf: a standby's copied configuration still names the primary's values.
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"]);
        let what = format!("postgres on 127.0.0.1:{}", self.port);
        let server = Supervised::spawn(what, cmd, &self.log_file)?;
        let pid_file = self.data_dir.join("postmaster.pid");
        let pid = server.pid();
        // Ready means: postmaster.pid is *our* child's and says "ready" (accepting connections;
        // a hot standby writes it once consistent). Probing the port instead could be fooled by
        // another server on the same port while ours is still failing to bind.
        let ready = server.wait_ready(READY_TIMEOUT, Duration::from_millis(50), || {
            postmaster_ready(&pid_file, pid)
        });
        match ready {
            Ok(()) => {
                self.server = Some(server);
                Ok(())
            }
            Err(e) => {
                server.stop(Signal::SIGQUIT, Duration::from_secs(5));
                Err(e)
            }
        }
    }

    /// Stops the server like `pg_ctl stop -m <mode>`; after 30 s the whole process group is
    /// SIGKILLed. A stopped cluster can be started again with [`start`](Self::start).
    pub fn stop(&mut self, mode: StopMode) {
        if let Some(server) = self.server.take() {
            let sig = match mode {
                StopMode::Fast => Signal::SIGINT,
                StopMode::Immediate => Signal::SIGQUIT,
            };
            server.stop(sig, STOP_GRACE);
        }
    }

    /// SIGKILLs the postmaster and its backends at once: the harshest crash (no shutdown at all).
    pub fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop(Signal::SIGKILL, Duration::from_secs(5));
        }
    }

    /// Runs `sql` (one or more statements) in database `postgres` and returns psql's unaligned,
    /// tuples-only output (`|`-separated columns, one row per line), trimmed.
    pub fn psql(&self, sql: &str) -> Result<String, LabError> {
        self.psql_db("postgres", sql)
    }

    /// [`psql`](Self::psql) in database `db`.
    pub fn psql_db(&self, db: &str, sql: &str) -> Result<String, LabError> {
        run_checked(self.psql_command(self.port, db), Some(sql)).map(|s| s.trim().to_string())
    }

    /// Whether the server is a standby (`pg_is_in_recovery()`).
    pub fn is_in_recovery(&self) -> Result<bool, LabError> {
        Ok(self.psql("SELECT pg_is_in_recovery();")? == "t")
    }

    /// Promotes a standby with `pg_promote(wait => true)`; afterwards it accepts writes.
    pub fn promote(&self) -> Result<(), LabError> {
        let out = self.psql("SELECT pg_promote(wait => true, wait_seconds => 60);")?;
        if out != "t" {
            return Err(LabError::State(format!(
                "pg_promote on port {} returned {out:?} (not promoted within 60 s)",
                self.port
            )));
        }
        Ok(())
    }

    /// Polls `sql` until its output equals `expected` or `timeout` passes (then fails with the
    /// last output). For tests that wait for replication. Errors of individual polls are retried.
    pub fn wait_for(
        &self,
        db: &str,
        sql: &str,
        expected: &str,
        timeout: Duration,
    ) -> Result<(), LabError> {
        let start = Instant::now();
        loop {
            let last = self.psql_db(db, sql);
            if matches!(&last, Ok(out) if out == expected) {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(LabError::State(format!(
                    "port {}: `{sql}` did not return {expected:?} within {timeout:?}; last: {last:?}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PgCluster {
    /// Immediate stop: nothing of a dropped cluster is worth a shutdown checkpoint.
    fn drop(&mut self) {
        self.stop(StopMode::Immediate);
    }
}

/// Whether `postmaster.pid` names `pid` and its status line (8th) is `ready`.
fn postmaster_ready(pid_file: &Path, pid: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return false;
    };
    let lines: Vec<&str> = text.lines().collect();
    lines.first().and_then(|l| l.trim().parse::<u32>().ok()) == Some(pid)
        && lines.get(7).is_some_and(|l| l.trim() == "ready")
}

fn append(path: &Path, text: &str) -> Result<(), LabError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| LabError::io(format!("opening {}", path.display()), e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}
