//! Engine semantics, exercised through workflows of test steps run by an in-process executor
//! (see `harness` for the test steps).

mod harness;

mod approvals;
mod compensation;
mod dag;
mod durations;
mod grants;
mod inputs;
mod matrix;
mod resume;
mod retries;
