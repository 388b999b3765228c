//! Links the `meridian` binary as a position-dependent executable (`-no-pie`).
//!
//! A PIE is relocated by the dynamic loader at every start: this binary carries ~115,000
//! relative relocations, and applying them touches (copies) every page of its 2.4 MB of
//! relocated read-only data. Linked at a fixed address, the linker resolves them once and a
//! command starts without them. Measured with `scripts/bench-journal --only startup` (see the
//! README's benchmarks). The objects stay position-independent code; only the link changes,
//! and only on Linux with the GNU toolchain, where `-no-pie` is understood.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=meridian=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
