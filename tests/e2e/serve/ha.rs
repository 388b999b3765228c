//! Several servers on one PostgreSQL journal.

use super::*;

/// Two servers on one PostgreSQL journal, a schedule every second: each tick is claimed by one
/// server and starts one run; SIGKILLing one server (then the other, after a restart) leaves
/// no tick unfired for longer than the takeover, which needs no lease: the survivor claims the
/// very next tick.
#[test]
fn two_servers_on_one_postgres_fire_each_tick_once() {
    use crate::distributed::{Workers, store};
    let s = Scratch::new();
    let Some(db) = store(&s) else { return };
    s.write(
        "wf/tick.yaml",
        "name: tick\non:\n  schedule:\n    - cron: \"* * * * * *\"\nsteps:\n  - {id: a, uses: hello}\n",
    );
    let worker = db
        .cmd(&s)
        .args(["worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _workers = Workers(vec![worker]);
    let a = Served::spawn(db.cmd(&s), &["--workflows", "wf"]);
    let b = Served::spawn(db.cmd(&s), &["--workflows", "wf"]);
    std::thread::sleep(Duration::from_secs(5));
    drop(a); // SIGKILL
    std::thread::sleep(Duration::from_secs(5));
    let a = Served::spawn(db.cmd(&s), &["--workflows", "wf"]);
    std::thread::sleep(Duration::from_secs(3));
    drop(b); // SIGKILL
    std::thread::sleep(Duration::from_secs(5));
    drop(a);

    let q = |sql: &str| db.pg.psql_db("meridian", sql).unwrap();
    let ticks: Vec<i64> =
        q("SELECT tick FROM meridian.ticks WHERE schedule = 'tick#0' ORDER BY tick")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
    let servers: i64 = q("SELECT count(DISTINCT claimed_by) FROM meridian.ticks")
        .parse()
        .unwrap();
    let runs: usize = q("SELECT count(*) FROM meridian.runs WHERE workflow = 'tick'")
        .parse()
        .unwrap();
    assert!(
        ticks.len() >= 12,
        "only {} ticks fired in ~18 s: {ticks:?}",
        ticks.len()
    );
    assert!(servers >= 2, "one server fired every tick");
    // A claimed tick starts one run; a server killed between its claim and the run's record
    // loses that one tick (two kills: at most two).
    assert!(
        runs <= ticks.len() && runs + 2 >= ticks.len(),
        "{runs} runs for {} ticks",
        ticks.len()
    );
    // Takeover: the largest gap between consecutive fired ticks.
    let gap = ticks.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        gap <= 3_000,
        "a gap of {gap} ms between fired ticks: {ticks:?}"
    );
    eprintln!(
        "takeover: largest gap between fired ticks {gap} ms ({} ticks, {runs} runs)",
        ticks.len()
    );
}
