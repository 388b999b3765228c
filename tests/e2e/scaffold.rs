//! `meridian new step` scaffolds a crate that builds as is and runs in a workflow.

use std::process::Command;

use crate::support::{Scratch, expect_code};

#[test]
fn a_scaffolded_step_builds_and_runs() {
    let s = Scratch::new();
    // As from an installed binary: no SDK path given, the SDK comes out of the binary.
    let out = s
        .cmd()
        .args(["new", "step", "my-probe", "--dir", "my-probe"])
        .env_remove("MERIDIAN_SDK_PATH")
        .output()
        .unwrap();
    let (out, _) = expect_code(&out, 0);
    assert!(out.contains("cargo build-step"), "{out}");
    assert!(out.contains("vendored in my-probe/vendor"), "{out}");
    let manifest = std::fs::read_to_string(s.path().join("my-probe/Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"path = "vendor/meridian-sdk""#),
        "{manifest}"
    );
    for f in [
        "README.md",
        "workflow.yaml",
        "vendor/wit/step.wit",
        "vendor/meridian-sdk/src/lib.rs",
    ] {
        assert!(s.path().join("my-probe").join(f).exists(), "{f}");
    }

    // Test and build it like a step author would (its own target dir, reused between runs).
    let target = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    let cargo = |args: &[&str]| {
        let out = Command::new(env!("CARGO"))
            .args(args)
            .current_dir(s.path().join("my-probe"))
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tested = cargo(&["test", "--quiet"]);
    assert!(tested.contains("2 passed"), "{tested}");
    cargo(&["build-step", "--quiet"]);
    let wasm = target.join("wasm32-wasip2/release/my_probe.wasm");
    assert!(wasm.exists());

    s.write(
        "wf.yaml",
        &format!(
            "name: custom\nsteps:\n  - id: p\n    uses: {}\n    with: {{name: Ada}}\n",
            wasm.display()
        ),
    );
    let (out, _) = expect_code(&s.run(&["--json", "run", "wf.yaml"]), 0);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["steps"][0]["legs"][0]["output"]["message"], "hello, Ada");

    // Its schema is enforced before anything runs.
    s.write(
        "bad.yaml",
        &format!(
            "name: custom\nsteps:\n  - id: p\n    uses: {}\n    with: {{nmae: Ada}}\n",
            wasm.display()
        ),
    );
    let (_, err) = expect_code(&s.run(&["validate", "bad.yaml"]), 2);
    assert!(err.contains("bad.yaml:5:"), "{err}");
}

#[test]
fn scaffold_refuses_bad_names_and_non_empty_dirs() {
    let s = Scratch::new();
    expect_code(&s.run(&["new", "step", "Bad_Name"]), 2);
    s.write("taken/file", "x");
    let (_, err) = expect_code(&s.run(&["new", "step", "ok", "--dir", "taken"]), 2);
    assert!(err.contains("not empty"), "{err}");
}
