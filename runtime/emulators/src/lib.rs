//! meridian-emulators
