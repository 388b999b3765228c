//! The web console's pages, rendered on the server with [maud] (HTML checked when compiled,
//! every interpolated value escaped), and the same run page as one self-contained file for
//! `meridian runs show RUN --html`.
//!
//! Everything a step produced — errors, outputs, plan records, approval comments — is
//! untrusted: it is only ever written through maud's escaping into HTML text or attributes,
//! never into a script. The pages work without JavaScript; `console.js` only re-fetches the
//! live part of a run page when the run's event stream says something happened.
//!
//! The caller (the server, the CLI) reads the journal and hands plain data to these functions;
//! nothing here does I/O.

pub mod assets;
mod bars;
mod chart;
mod diff;
mod fmt;
mod layout;
mod pages;
mod run;
mod timeline;

#[cfg(test)]
mod tests;

pub use fmt::{day_start_ms, wall};
pub use layout::{Shell, Viewer};
pub use pages::{
    DriftRow, DrillHistory, DrillRun, GitRow, ReadyRow, RunsQuery, ScheduleRow, WorkflowRow,
    drills_page, error_page, login_page, overview_page, runs_page, schedules_page,
};
pub use run::{RunData, overall, run_live, run_page};
