//! meridian-engine
