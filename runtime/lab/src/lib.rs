//! meridian-lab
