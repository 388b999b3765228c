//! The scheduler: fires each `on.schedule` entry (and each `[[schedule]]` of the server config)
//! at its cron ticks, in its time zone, under its overlap policy, and pauses a schedule whose
//! runs keep failing.
//!
//! A schedule's pause and its count of failed runs are saved in the journal at every change
//! ([`meridian_store::Journal::save_schedule`]): a restart keeps them, and so does every server
//! sharing the journal (a tick reads them before it fires).
//!
//! Ticks missed while the server was down are not fired, unless the schedule says
//! `catch-up: latest`: then the latest missed tick fires once at start-up (a missed tick is one
//! after the schedule's last journaled run).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use meridian_model::{OverlapPolicy, Workflow};
use meridian_protocol::{Mode, RunStatus};
use meridian_store::ScheduleState;
use serde::Serialize;

use crate::Server;
use crate::api::ApiError;
use crate::pauses::resume_hint;
use crate::runs::StartRequest;

/// One schedule and where it stands.
pub(crate) struct Sched {
    pub spec: Spec,
    /// The next tick (without jitter), when armed.
    pub next: Option<DateTime<Utc>>,
    /// When the next tick fires: `next` plus this tick's jitter.
    pub fire_at: Option<DateTime<Utc>>,
    pub last_fire: Option<DateTime<Utc>>,
    pub last_run: Option<String>,
    pub last_result: Option<LastResult>,
    /// Consecutive runs that failed or timed out.
    pub failures: u32,
    /// Why it does not fire (a person paused it, or its runs kept failing).
    pub paused: Option<String>,
    /// A tick waits for the running one (`overlap: queue`; at most one waits).
    pub queued: bool,
    /// Runs it started that have not ended.
    pub running: Vec<String>,
}

/// What a schedule's last tick or run came to: a word for badges and scripts, and a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LastResult {
    pub state: &'static str,
    pub text: String,
}

/// A tick not fired: overlap, or the scheduler was late.
const SKIPPED: &str = "skipped";
/// A tick that could not fire (the journal did not answer), or a run that could not start.
const NOT_FIRED: &str = "not-fired";

impl LastResult {
    fn new(state: &'static str, text: String) -> LastResult {
        LastResult { state, text }
    }

    /// How run `run_id` of a schedule ended.
    pub(crate) fn of_run(run_id: &str, status: RunStatus, message: &str) -> LastResult {
        // The engine's message may start with the status already ("failed: probe").
        LastResult::new(
            status.as_str(),
            match message {
                "" => format!("run {run_id}: {}", status.as_str()),
                m if m.starts_with(status.as_str()) => format!("run {run_id}: {m}"),
                m => format!("run {run_id}: {}: {m}", status.as_str()),
            },
        )
    }
}

/// What a schedule is, from a workflow file or the server config.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Spec {
    /// `WORKFLOW#N` for the N-th entry of the file's `on.schedule`, `WORKFLOW@config#N` for
    /// the N-th `[[schedule]]` of the server config.
    pub id: String,
    pub workflow: String,
    pub cron: String,
    pub timezone: Option<String>,
    pub overlap: OverlapPolicy,
    pub catch_up: bool,
    pub jitter: Option<Duration>,
    pub inputs: BTreeMap<String, String>,
    /// Why it cannot be armed (an unknown time zone in the server config, a missing input).
    pub error: Option<String>,
}

/// A schedule as the API shows it.
#[derive(Serialize)]
pub struct ScheduleInfo {
    pub id: String,
    pub workflow: String,
    pub cron: String,
    pub timezone: String,
    pub overlap: OverlapPolicy,
    pub next_fire: Option<DateTime<Utc>>,
    pub last_fire: Option<DateTime<Utc>>,
    pub last_run: Option<String>,
    /// What the last tick or run came to, in a sentence.
    pub last_result: Option<String>,
    /// The same as one word: a run's status (`succeeded`, `failed`, `timed-out`,
    /// `cancelled`, `awaiting-approval`), `skipped` (a tick skipped), or `not-fired` (a tick
    /// that could not fire, or a run that could not start).
    pub last_state: Option<&'static str>,
    pub consecutive_failures: u32,
    pub paused: Option<String>,
    pub error: Option<String>,
    pub running: Vec<String>,
}

impl Spec {
    fn tz(&self) -> Result<chrono_tz::Tz, String> {
        match &self.timezone {
            None => Ok(chrono_tz::UTC),
            Some(t) => t.parse().map_err(|_| format!("unknown time zone `{t}`")),
        }
    }

    fn cron(&self) -> Result<croner::Cron, String> {
        self.cron
            .parse()
            .map_err(|e| format!("invalid cron `{}`: {e}", self.cron))
    }

    /// The first tick after `after`: on the whole second, whatever the sub-second of `after`
    /// (croner keeps it, and two servers started at different instants then fired, and claimed,
    /// different ticks for one cron second — each ran its own run).
    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
        let tz = self.tz()?;
        let t = self
            .cron()?
            .find_next_occurrence(&whole_second(after).with_timezone(&tz), false)
            .map_err(|e| e.to_string())?;
        Ok(whole_second(t.with_timezone(&Utc)))
    }

    /// How many ticks fall strictly between `after` and `before` (bounded: 10,000).
    pub(crate) fn ticks_between(&self, after: DateTime<Utc>, before: DateTime<Utc>) -> u64 {
        let mut n = 0;
        let mut t = after;
        while n < 10_000 {
            match self.next_after(t) {
                Ok(next) if next < before => {
                    n += 1;
                    t = next;
                }
                _ => break,
            }
        }
        n
    }

    /// The last tick at or before `at`.
    fn previous(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.tz().ok()?;
        let t = self
            .cron()
            .ok()?
            .find_previous_occurrence(&whole_second(at).with_timezone(&tz), true)
            .ok()?;
        Some(t.with_timezone(&Utc))
    }
}

/// Every schedule of the workflows in service and of the server config.
pub(crate) fn specs(workflows: &[Arc<Workflow>], config: &crate::ServerConfig) -> Vec<Spec> {
    let mut out = Vec::new();
    for wf in workflows {
        for (i, s) in wf.on.iter().flat_map(|o| &o.schedule).enumerate() {
            out.push(Spec {
                id: format!("{}#{i}", wf.name),
                workflow: wf.name.clone(),
                cron: s.cron.clone(),
                timezone: s.timezone.clone(),
                overlap: s.overlap,
                catch_up: s.catch_up,
                jitter: s.jitter,
                inputs: s.inputs.clone(),
                error: None,
            });
        }
    }
    for (i, s) in config.schedules.iter().enumerate() {
        let mut error = None;
        let overlap = match s.overlap.as_deref().map(str::parse::<OverlapPolicy>) {
            None => OverlapPolicy::Skip,
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                error = Some(format!("overlap {e}"));
                OverlapPolicy::Skip
            }
        };
        let catch_up = match s.catch_up.as_deref() {
            None | Some("none") => false,
            Some("latest") => true,
            Some(other) => {
                error = Some(format!("catch-up `{other}`: use none or latest"));
                false
            }
        };
        if !workflows.iter().any(|w| w.name == s.workflow) {
            error = Some(format!(
                "no workflow `{}` in the workflows directory",
                s.workflow
            ));
        }
        let inputs = s
            .inputs
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        out.push(Spec {
            id: format!("{}@config#{i}", s.workflow),
            workflow: s.workflow.clone(),
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            overlap,
            catch_up,
            jitter: s.jitter,
            inputs,
            error,
        });
    }
    for spec in &mut out {
        if spec.error.is_none() {
            spec.error = spec.tz().err().or_else(|| spec.cron().err());
        }
    }
    out
}

impl Sched {
    fn new(spec: Spec) -> Sched {
        Sched {
            spec,
            next: None,
            fire_at: None,
            last_fire: None,
            last_run: None,
            last_result: None,
            failures: 0,
            paused: None,
            queued: false,
            running: Vec::new(),
        }
    }

    /// What is saved of it in the journal.
    pub(crate) fn state(&self) -> ScheduleState {
        ScheduleState {
            schedule: self.spec.id.clone(),
            paused: self.paused.clone(),
            failures: self.failures,
        }
    }

    /// Sets the next tick after `after`, with this tick's jitter.
    pub(crate) fn arm(&mut self, after: DateTime<Utc>) {
        if self.spec.error.is_some() {
            self.next = None;
            self.fire_at = None;
            return;
        }
        match self.spec.next_after(after) {
            Ok(t) => {
                self.next = Some(t);
                let jitter = self
                    .spec
                    .jitter
                    .map(|j| rand::random_range(0..=j.as_millis() as u64))
                    .unwrap_or(0);
                self.fire_at = Some(t + chrono::Duration::milliseconds(jitter as i64));
            }
            Err(e) => {
                self.spec.error = Some(e);
                self.next = None;
                self.fire_at = None;
            }
        }
    }

    pub(crate) fn info(&self) -> ScheduleInfo {
        ScheduleInfo {
            id: self.spec.id.clone(),
            workflow: self.spec.workflow.clone(),
            cron: self.spec.cron.clone(),
            timezone: self.spec.timezone.clone().unwrap_or_else(|| "UTC".into()),
            overlap: self.spec.overlap,
            next_fire: if self.paused.is_some() {
                None
            } else {
                self.fire_at
            },
            last_fire: self.last_fire,
            last_run: self.last_run.clone(),
            last_result: self.last_result.as_ref().map(|r| r.text.clone()),
            last_state: self.last_result.as_ref().map(|r| r.state),
            consecutive_failures: self.failures,
            paused: self.paused.clone(),
            error: self.spec.error.clone(),
            running: self.running.clone(),
        }
    }
}

impl Server {
    /// Brings the schedules in line with the workflows in service: new ones are armed, changed
    /// ones re-armed (keeping their history), removed ones dropped. `start_up`: the first call,
    /// where `catch-up: latest` may fire a missed tick.
    pub(crate) fn sync_schedules(self: &Arc<Self>, start_up: bool) -> Vec<(String, DateTime<Utc>)> {
        let workflows: Vec<Arc<Workflow>> = self
            .catalog
            .read()
            .unwrap()
            .workflows()
            .map(|l| l.workflow.clone())
            .collect();
        let mut specs = specs(&workflows, &self.config);
        // A schedule must be able to start its runs: every required input given by the entry
        // or the server's inputs file for the workflow.
        for spec in &mut specs {
            if spec.error.is_some() {
                continue;
            }
            let Some(wf) = workflows.iter().find(|w| w.name == spec.workflow) else {
                continue;
            };
            let mut raw = match self.file_inputs(wf) {
                Ok(m) => m,
                Err(e) => {
                    spec.error = Some(e.one_line());
                    continue;
                }
            };
            raw.extend(spec.inputs.clone());
            if let Err(e) = meridian_runner::check_inputs(wf, &raw) {
                spec.error = Some(format!(
                    "{e}; give it in the schedule's `inputs:` or in an inputs file for the workflow in the server config ([workflow.{}] inputs-file = …)",
                    spec.workflow
                ));
            }
        }
        let saved = self.saved_schedules();
        let now = Utc::now();
        let mut catch_up = Vec::new();
        let mut scheds = self.schedules.lock().unwrap();
        let mut next: BTreeMap<String, Sched> = BTreeMap::new();
        for spec in specs {
            let sched = match scheds.remove(&spec.id) {
                Some(mut old) if old.spec == spec => {
                    old.spec = spec;
                    old
                }
                Some(mut old) => {
                    old.spec = spec;
                    old.arm(now);
                    old
                }
                None => {
                    let mut s = Sched::new(spec);
                    if let Some(st) = saved.get(&s.spec.id) {
                        s.paused.clone_from(&st.paused);
                        s.failures = st.failures;
                        self.metrics.schedule_paused(&s.spec.id, s.paused.is_some());
                    }
                    s.arm(now);
                    if start_up && s.spec.catch_up && s.spec.error.is_none() {
                        catch_up.push(s.spec.id.clone());
                    }
                    s
                }
            };
            next.insert(sched.spec.id.clone(), sched);
        }
        *scheds = next;
        drop(scheds);
        // Which schedules missed a tick while the server was down: one after their last run.
        let mut fire = Vec::new();
        for id in catch_up {
            let (spec, prev) = {
                let scheds = self.schedules.lock().unwrap();
                let Some(s) = scheds.get(&id) else { continue };
                (s.spec.clone(), s.spec.previous(now))
            };
            let Some(prev) = prev else { continue };
            match self.last_scheduled_run(&spec) {
                Some(last) if last < prev => fire.push((id, prev)),
                _ => {}
            }
        }
        fire
    }

    /// When the schedule last started a run, from the journal (the last 1,000 runs).
    fn last_scheduled_run(&self, spec: &Spec) -> Option<DateTime<Utc>> {
        let journal = self.runner.journal();
        let trigger = format!("schedule:{}", spec.id);
        journal
            .runs(1000)
            .ok()?
            .into_iter()
            .filter(|r| r.workflow == spec.workflow)
            .find(|r| {
                journal
                    .run(&r.id)
                    .is_ok_and(|(rec, _)| rec.settings.trigger.as_deref() == Some(&trigger))
            })
            .and_then(|r| DateTime::from_timestamp_millis(r.created_at_ms))
    }

    /// The scheduler's loop: fires what is due, then sleeps until the next tick (at most
    /// 200 ms, so a reload's new schedules are seen soon). Ends when the server drains.
    pub(crate) async fn schedule_loop(self: Arc<Self>, catch_up: Vec<(String, DateTime<Utc>)>) {
        for (id, tick) in catch_up {
            if self.claim(&[(id.clone(), tick, tick)]) == [true] {
                tracing::info!(schedule = %id, "firing the latest missed tick (catch-up: latest)");
                self.fire(&id, None).await;
            }
        }
        while !self.draining() {
            let now = Utc::now();
            let due: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = {
                let mut scheds = self.schedules.lock().unwrap();
                let mut due = Vec::new();
                for s in scheds.values_mut() {
                    if let Some(at) = s.fire_at
                        && at <= now
                    {
                        let tick = s.next.unwrap_or(now);
                        due.push((s.spec.id.clone(), tick, at));
                        // Ticks that came and went while the scheduler was late are not fired
                        // (no catch-up), but said: counted, logged, shown.
                        let missed = s.spec.ticks_between(tick, now);
                        if missed > 0 {
                            tracing::warn!(schedule = %s.spec.id, missed, "the scheduler was late: ticks skipped");
                            self.metrics.ticks_skipped(&s.spec.id, missed);
                            s.last_result = Some(LastResult::new(
                                SKIPPED,
                                format!(
                                    "{missed} tick(s) before {now} skipped: the scheduler was late"
                                ),
                            ));
                        }
                        s.arm(tick.max(now - chrono::Duration::milliseconds(1)));
                    }
                }
                due
            };
            // Servers sharing a journal race for each tick; the journal lets one win. All the
            // ticks of a pass are claimed together (one durable commit on SQLite).
            let won = self.claim(&due);
            for ((id, _, at), won) in due.into_iter().zip(won) {
                if !won {
                    continue;
                }
                let late = (Utc::now() - at).to_std().unwrap_or_default();
                self.metrics.schedule_fired(late);
                self.fire(&id, Some(at)).await;
            }
            self.start_queued_elsewhere().await;
            let wait = {
                let scheds = self.schedules.lock().unwrap();
                scheds
                    .values()
                    .filter_map(|s| s.fire_at)
                    .min()
                    .map(|t| (t - Utc::now()).to_std().unwrap_or_default())
                    .unwrap_or(Duration::from_millis(200))
                    .min(Duration::from_millis(200))
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.drain.cancelled() => break,
            }
        }
    }

    /// Whether this server fires `tick` of schedule `id`: the journal's claim decides among
    /// the servers that share it. A journal that does not answer fires nothing (a tick missed
    /// is safer than a drill run twice), and says so.
    fn claim(&self, due: &[(String, DateTime<Utc>, DateTime<Utc>)]) -> Vec<bool> {
        if due.is_empty() {
            return Vec::new();
        }
        let ticks: Vec<(String, i64)> = due
            .iter()
            .map(|(id, tick, _)| (id.clone(), tick.timestamp_millis()))
            .collect();
        match self.runner.journal().claim_ticks(&ticks, &self.name) {
            Ok(won) => won,
            Err(e) => {
                let mut scheds = self.schedules.lock().unwrap();
                for (id, tick, _) in due {
                    tracing::warn!(schedule = %id, "tick not fired: cannot claim it in the journal: {e}");
                    if let Some(s) = scheds.get_mut(id) {
                        s.last_result = Some(LastResult::new(
                            NOT_FIRED,
                            format!("tick at {tick} not fired: the journal did not answer: {e}"),
                        ));
                    }
                }
                vec![false; due.len()]
            }
        }
    }

    /// Fires schedule `id` now (the API's and the console's `trigger`), under its overlap
    /// policy; a paused or broken schedule is refused with why (409) rather than firing nothing.
    /// Fires schedule `id` now: the run it started, or `None` when its overlap policy started
    /// none (skipped, or queued behind a run still going).
    pub(crate) async fn trigger(self: &Arc<Self>, id: &str) -> Result<Option<String>, ApiError> {
        self.refresh_schedule(id);
        {
            let scheds = self.schedules.lock().unwrap();
            let Some(found) = scheds.get(id) else {
                return Err(ApiError::not_found(format!("no schedule `{id}`")));
            };
            if let Some(why) = &found.paused {
                return Err(ApiError::conflict(format!(
                    "schedule `{id}` is paused ({why}); resume it first: {}",
                    resume_hint(id)
                )));
            }
            if let Some(e) = &found.spec.error {
                return Err(ApiError::conflict(format!(
                    "schedule `{id}` cannot fire: {e}"
                )));
            }
        }
        match self.fire(id, None).await {
            // Said to the caller, not only kept in the schedule's `last_result`: a trigger that
            // answered 202 and started nothing looked like a success.
            Some(Err(e)) => Err(e),
            Some(Ok(run)) => Ok(Some(run)),
            None => Ok(None),
        }
    }

    /// One tick of a schedule (or a `trigger`), under its overlap policy: the run it started,
    /// or why none could start (`None`: no start was due — paused, skipped or queued).
    pub(crate) async fn fire(
        self: &Arc<Self>,
        id: &str,
        at: Option<DateTime<Utc>>,
    ) -> Option<Result<String, ApiError>> {
        self.refresh_schedule(id);
        // The overlap policy holds across the servers sharing the journal: the runs of this
        // schedule another server started count too (only this server's did).
        let overlap = self.schedules.lock().unwrap().get(id)?.spec.overlap;
        let elsewhere = match overlap {
            OverlapPolicy::Allow => Vec::new(),
            _ => self.going_in_journal(id),
        };
        let (spec, running) = {
            let mut scheds = self.schedules.lock().unwrap();
            let s = scheds.get_mut(id)?;
            if s.paused.is_some() || s.spec.error.is_some() {
                return None;
            }
            s.last_fire = Some(at.unwrap_or_else(Utc::now));
            let mut going = s.running.clone();
            going.extend(elsewhere.into_iter().filter(|r| !s.running.contains(r)));
            if !going.is_empty() {
                match s.spec.overlap {
                    OverlapPolicy::Skip => {
                        s.last_result = Some(LastResult::new(
                            SKIPPED,
                            format!(
                                "tick skipped: run {} was still going (overlap: skip)",
                                going.join(", ")
                            ),
                        ));
                        return None;
                    }
                    OverlapPolicy::Queue => {
                        s.queued = true;
                        return None;
                    }
                    OverlapPolicy::CancelPrevious | OverlapPolicy::Allow => {}
                }
            }
            (s.spec.clone(), going)
        };
        if spec.overlap == OverlapPolicy::CancelPrevious {
            let why = format!("cancelled by schedule {id} (overlap: cancel-previous)");
            for run in running {
                if let Err(e) = self.cancel_run(&run, &why).await {
                    tracing::warn!(schedule = %id, run = %run, "cannot cancel the previous run: {e}");
                }
            }
        }
        Some(self.start_scheduled(&spec).await)
    }

    /// Starts the ticks queued behind another server's run (`overlap: queue`) once no run of
    /// their schedule is going any more: this server hears only of its own runs' ends.
    pub(crate) async fn start_queued_elsewhere(self: &Arc<Self>) {
        let waiting: Vec<String> = self
            .schedules
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.queued && s.running.is_empty() && s.paused.is_none())
            .map(|s| s.spec.id.clone())
            .collect();
        for id in waiting {
            if !self.going_in_journal(&id).is_empty() {
                continue;
            }
            let spec = {
                let mut scheds = self.schedules.lock().unwrap();
                let Some(s) = scheds.get_mut(&id).filter(|s| s.queued) else {
                    continue;
                };
                s.queued = false;
                s.spec.clone()
            };
            let _ = self.start_scheduled(&spec).await;
        }
    }

    async fn start_scheduled(self: &Arc<Self>, spec: &Spec) -> Result<String, ApiError> {
        let started = self
            .start_run(StartRequest {
                workflow: spec.workflow.clone(),
                mode: Mode::Apply,
                inputs: spec.inputs.clone(),
                trigger: format!("schedule:{}", spec.id),
                schedule: Some(spec.id.clone()),
                idempotency_key: None,
            })
            .await;
        if let Err(e) = &started {
            tracing::error!(schedule = %spec.id, "could not start a run: {}", e.message);
        }
        let mut scheds = self.schedules.lock().unwrap();
        let Some(s) = scheds.get_mut(&spec.id) else {
            return started;
        };
        match &started {
            Ok(run) => {
                s.last_run = Some(run.clone());
                if !s.running.contains(run) {
                    s.running.push(run.clone());
                }
            }
            Err(e) => {
                s.last_result = Some(LastResult::new(
                    NOT_FIRED,
                    format!("could not start a run: {}", e.message),
                ));
                s.failures += 1;
                let paused = self.pause_if_failing(s);
                let state = s.state();
                drop(scheds);
                self.save_schedule(&state);
                if let Some(n) = paused {
                    self.notify(n);
                }
            }
        }
        started
    }

    /// A run a schedule started has ended.
    pub(crate) fn schedule_run_ended(
        self: &Arc<Self>,
        id: &str,
        run_id: &str,
        status: RunStatus,
        message: &str,
    ) {
        let mut scheds = self.schedules.lock().unwrap();
        let Some(s) = scheds.get_mut(id) else { return };
        s.running.retain(|r| r != run_id);
        s.last_result = Some(LastResult::of_run(run_id, status, message));
        let mut note = None;
        let before = s.state();
        match status {
            RunStatus::Failed | RunStatus::TimedOut => {
                s.failures += 1;
                note = self.pause_if_failing(s);
            }
            RunStatus::Succeeded => s.failures = 0,
            _ => {}
        }
        let state = Some(s.state()).filter(|st| *st != before);
        // A run that stopped at its gate is still going: a tick queued behind it waits for its
        // end (here, or through the journal if another server drives it on).
        let queued = s.queued
            && s.running.is_empty()
            && s.paused.is_none()
            && status != RunStatus::AwaitingApproval;
        if queued {
            s.queued = false;
        }
        let spec = s.spec.clone();
        drop(scheds);
        if let Some(state) = state {
            self.save_schedule(&state);
        }
        if let Some(n) = note {
            self.notify(n);
        }
        if queued && !self.draining() {
            let server = self.clone();
            tokio::spawn(async move {
                let _ = server.start_scheduled(&spec).await;
            });
        }
    }

    pub fn schedule_infos(&self) -> Vec<ScheduleInfo> {
        self.sync_last_runs();
        self.schedules
            .lock()
            .unwrap()
            .values()
            .map(Sched::info)
            .collect()
    }
}

/// `t` without its fraction of a second.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    t.with_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
