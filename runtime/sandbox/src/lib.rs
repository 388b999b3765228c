//! meridian-sandbox
