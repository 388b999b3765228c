//! meridian-artifacts
