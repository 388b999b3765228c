//! What happens during a run: the event types live in `meridian-protocol`, shared with the
//! journals and the CLI; re-exported here where the engine's users expect them.

pub use meridian_protocol::{Event, EventSink, Outcome, RunStatus, SinkError};
