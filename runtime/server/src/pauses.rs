//! Schedules' pauses: after N failed runs in a row, or by a person (`POST …/pause|resume`),
//! saved in the journal at every change so a restart and every server sharing the journal keep
//! them (each tick reads them again before it fires); and each schedule's runs as the journal
//! has them: its last run, and those still going (whichever server started them).

use std::collections::BTreeMap;

use chrono::Utc;
use meridian_store::ScheduleState;

use crate::Server;
use crate::api::ApiError;
use crate::notify::Note;
use crate::schedule::{Sched, ScheduleInfo};

impl Server {
    pub(crate) fn pause_if_failing(&self, s: &mut Sched) -> Option<Note> {
        let n = self.config.pause_after_failures;
        if s.failures < n || s.paused.is_some() {
            return None;
        }
        let why = format!(
            "paused after {n} consecutive failed runs (last: {})",
            s.last_result.as_ref().map_or("-", |r| r.text.as_str()),
        );
        s.paused = Some(why.clone());
        self.metrics.schedule_paused(&s.spec.id, true);
        Some(Note::schedule(
            "schedule.paused",
            &s.spec.workflow,
            &s.spec.id,
            &format!("{why}; resume it: {}", resume_hint(&s.spec.id)),
        ))
    }

    /// Pauses (saying why: "paused by olga: …") or resumes a schedule.
    pub fn set_paused(&self, id: &str, pause: Option<String>) -> Result<ScheduleInfo, ApiError> {
        let (info, state, before) = {
            let mut scheds = self.schedules.lock().unwrap();
            let s = scheds
                .get_mut(id)
                .ok_or_else(|| ApiError::not_found(format!("no schedule `{id}`")))?;
            let before = (s.paused.clone(), s.failures, s.next, s.fire_at);
            match pause {
                // Paused already: the first pause and its reason stand (a second pause
                // without a reason wiped them).
                Some(_) if s.paused.is_some() => {}
                Some(why) => s.paused = Some(why),
                None => {
                    s.paused = None;
                    s.failures = 0;
                    s.arm(Utc::now());
                }
            }
            self.metrics.schedule_paused(id, s.paused.is_some());
            (s.info(), s.state(), before)
        };
        // A pause that a restart would forget is not a pause: refused when it cannot be saved,
        // and the schedule left as it was (a refused resume showed the schedule armed).
        if let Err(e) = self.runner.journal().save_schedule(&state) {
            if let Some(s) = self.schedules.lock().unwrap().get_mut(id) {
                (s.paused, s.failures, s.next, s.fire_at) = before;
                self.metrics.schedule_paused(id, s.paused.is_some());
            }
            return Err(ApiError::from_store(&e));
        }
        Ok(info)
    }

    /// Every schedule's saved state, by id (none when the journal does not answer: said).
    pub(crate) fn saved_schedules(&self) -> BTreeMap<String, ScheduleState> {
        match self.runner.journal().schedules() {
            Ok(all) => all.into_iter().map(|s| (s.schedule.clone(), s)).collect(),
            Err(e) => {
                tracing::warn!("cannot read the schedules' saved pauses from the journal: {e}");
                BTreeMap::new()
            }
        }
    }

    /// Takes schedule `id`'s pause and failures from the journal, where another server sharing
    /// it (or this one, before a restart) may have changed them.
    pub(crate) fn refresh_schedule(&self, id: &str) {
        let saved = self.saved_schedules();
        let mut scheds = self.schedules.lock().unwrap();
        if let (Some(s), Some(st)) = (scheds.get_mut(id), saved.get(id)) {
            self.take_saved(s, st);
        }
    }

    /// `st`'s pause and failures into `s`, armed again if `st` resumed it.
    fn take_saved(&self, s: &mut Sched, st: &ScheduleState) {
        if s.paused == st.paused && s.failures == st.failures {
            return;
        }
        let resumed = s.paused.is_some() && st.paused.is_none();
        s.paused.clone_from(&st.paused);
        s.failures = st.failures;
        if resumed {
            s.arm(Utc::now());
        }
        self.metrics.schedule_paused(&s.spec.id, s.paused.is_some());
    }

    /// Saves a schedule's state; a failure is logged (the state in memory goes on).
    pub(crate) fn save_schedule(&self, state: &ScheduleState) {
        if let Err(e) = self.runner.journal().save_schedule(state) {
            tracing::warn!(schedule = %state.schedule, "cannot save the schedule's pause and failures: {e}");
        }
    }
}

/// How to resume a paused schedule, as a request that works when typed: the id percent-encoded
/// (`dr-drill#0` is `dr-drill%230`; a bare `#` starts the URL's fragment, and curl sends the path
/// without it).
pub(crate) fn resume_hint(id: &str) -> String {
    let mut path = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            path.push(b as char);
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    format!("POST /api/v1/schedules/{path}/resume")
}

/// How often [`Server::sync_last_runs`] reads the journal again.
const SYNC_LAST_RUNS: std::time::Duration = std::time::Duration::from_secs(1);

impl Server {
    /// Each schedule's pause, failure count and newest run in the journal (whichever server of
    /// the journal paused it or started the run), read again at most once every [`SYNC_LAST_RUNS`]: at start-up, so `last_fire`,
    /// `last_run` and `last_result` survive a restart, and before every answer about
    /// schedules, so servers sharing a journal answer alike (a server that did not fire a tick
    /// kept its own older answer until it restarted). The newest run is taken when it started
    /// at or after this server's last fire; a later fire of this server that started no run
    /// (skipped, not fired) stays. One indexed query per schedule's workflow, then records
    /// until found (at most 50).
    pub(crate) fn sync_last_runs(&self) {
        {
            let mut at = self
                .schedules_synced
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if at.is_some_and(|t| t.elapsed() < SYNC_LAST_RUNS) {
                return;
            }
            *at = Some(std::time::Instant::now());
        }
        // Pauses and failure counts: another server may have paused or resumed a schedule
        // since this one last fired it.
        let saved = self.saved_schedules();
        let specs: Vec<(String, String)> = {
            let mut scheds = self.schedules.lock().unwrap();
            for s in scheds.values_mut() {
                if let Some(st) = saved.get(&s.spec.id) {
                    self.take_saved(s, st);
                }
            }
            scheds
                .values()
                .map(|s| (s.spec.id.clone(), s.spec.workflow.clone()))
                .collect()
        };
        for (id, workflow) in specs {
            let Some(last) = self.runs_of_schedule(&id, &workflow, None, 50, 1).pop() else {
                continue;
            };
            let mut scheds = self.schedules.lock().unwrap();
            let Some(s) = scheds.get_mut(&id) else {
                continue;
            };
            if s.last_fire
                .is_some_and(|f| f.timestamp_millis() > last.created_at_ms)
            {
                continue;
            }
            if s.last_run.as_deref() != Some(last.id.as_str()) {
                s.last_fire = chrono::DateTime::from_timestamp_millis(last.created_at_ms);
                s.last_run = Some(last.id.clone());
            }
            if last.status != meridian_protocol::RunStatus::Running {
                s.last_result = Some(crate::schedule::LastResult::of_run(
                    &last.id,
                    last.status,
                    last.message.as_deref().unwrap_or_default(),
                ));
            }
        }
    }
}

impl Server {
    /// The runs of schedule `id` still going in the journal — running, or waiting at a gate —,
    /// whichever server started them (one indexed query per state, then each one's record). A journal
    /// that does not answer counts as none: the tick's claim already needed it.
    pub(crate) fn going_in_journal(&self, id: &str) -> Vec<String> {
        let Some(workflow) = self
            .schedules
            .lock()
            .unwrap()
            .get(id)
            .map(|s| s.spec.workflow.clone())
        else {
            return Vec::new();
        };
        // A run waiting at its gate is still going: a tick beside it started another run (a
        // daily drill whose approval waited a day had two).
        [
            meridian_protocol::RunStatus::Running,
            meridian_protocol::RunStatus::AwaitingApproval,
        ]
        .into_iter()
        .flat_map(|status| self.runs_of_schedule(id, &workflow, Some(status), 100, usize::MAX))
        .map(|r| r.id)
        .collect()
    }

    /// Schedule `id`'s runs in the journal, whichever server started them, newest first: one
    /// indexed query for `limit` runs of its workflow (in `status`, when given), then each
    /// one's record until `max` are found. A journal that does not answer gives none.
    pub(crate) fn runs_of_schedule(
        &self,
        id: &str,
        workflow: &str,
        status: Option<meridian_protocol::RunStatus>,
        limit: usize,
        max: usize,
    ) -> Vec<meridian_store::RunSummary> {
        let journal = self.runner.journal();
        let trigger = format!("schedule:{id}");
        let query = meridian_store::RunQuery {
            workflow: Some(workflow.to_string()),
            status,
            limit,
            ..meridian_store::RunQuery::default()
        };
        let Ok(page) = journal.query_runs(&query) else {
            return Vec::new();
        };
        page.runs
            .into_iter()
            .filter(|r| {
                journal
                    .run(&r.id)
                    .is_ok_and(|(rec, _)| rec.settings.trigger.as_deref() == Some(&trigger))
            })
            .take(max)
            .collect()
    }
}
