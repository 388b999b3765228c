//! # meridian-artifacts: the guest components, built by this crate's build script
//!
//! Building this crate runs `cargo build --release --target wasm32-wasip2` on the guest workspace
//! (`steps/Cargo.toml`), then exposes:
//! - one `pub const <NAME>: &str` per component with its absolute path, e.g. [`HELLO`],
//!   `NOOP`, `LOOP_FOREVER` (the crate directory's name, upper-cased, `-` → `_`);
//! - [`BUILTIN`]: `(step name, component bytes)` of every crate under `steps/`, embedded so the
//!   `meridian` binary runs `uses: hello` without any file next to it;
//! - [`ALL`]: `(name, path)` of every component, steps and test guests;
//! - [`FAILED`]: guest crates that did not compile. The build goes on without them (so one broken
//!   step does not block everyone else's tests) and warns; this crate's tests fail on them.
//!
//! Cost: the first build compiles the guests (about a minute on 2 cores); later builds are a
//! no-op unless a file under `steps/`, `sdk/` or `tests/guests/` changed. Needs the
//! `wasm32-wasip2` Rust target (`rustup target add wasm32-wasip2`).

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The bytes of the built-in step `name` (e.g. `"hello"`), if there is one.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_crate_built() {
        assert!(
            FAILED.is_empty(),
            "guest crates failed to build: {FAILED:?}; see the cargo warnings"
        );
    }

    #[test]
    fn builtins_are_components_and_paths_exist() {
        assert!(builtin("hello").is_some());
        assert!(builtin("http-probe").is_some());
        assert!(
            builtin("noop").is_none(),
            "test guests are not built-in steps"
        );
        for (name, bytes) in BUILTIN {
            // Component-model binary: magic, then version 0x0d and layer 1.
            assert_eq!(
                &bytes[..8],
                b"\0asm\x0d\0\x01\0",
                "{name} is not a component"
            );
        }
        for (name, path) in ALL {
            assert!(
                std::path::Path::new(path).exists(),
                "{name}: {path} missing"
            );
        }
        assert!(ALL.iter().any(|(n, _)| *n == "loop-forever"));
        assert!(HELLO.ends_with("hello.wasm"));
    }
}
