//! `meridian new step`: scaffolding.

use std::path::PathBuf;

use crate::out::outln;
use crate::{Exit, exit};

/// `meridian new step NAME`: a step crate that builds as is (`cargo build-step`, an alias for
/// `cargo build --release --target wasm32-wasip2`), whose `cargo test` runs its logic on the
/// host against the SDK's mock host, with a README and an example workflow. The SDK is vendored
/// from the binary (`vendor/`), so this works from an installed `meridian` anywhere.
pub fn scaffold(
    name: &str,
    dir: Option<PathBuf>,
    lang: crate::scaffold_polyglot::Lang,
) -> anyhow::Result<u8> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(Exit::invalid(format!(
            "error: step name `{name}`: use lower-case letters, digits and `-`, starting with a letter"
        )));
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        return Err(Exit::invalid(format!(
            "error: {} exists and is not empty; pick another --dir",
            dir.display()
        )));
    }
    if lang != crate::scaffold_polyglot::Lang::Rust {
        std::fs::create_dir_all(&dir)?;
        return crate::scaffold_polyglot::scaffold(name, &dir, lang);
    }
    // The SDK this binary carries, unless MERIDIAN_SDK_PATH names a checkout's (SDK work).
    let (sdk, vendored) = match std::env::var_os("MERIDIAN_SDK_PATH") {
        Some(p) => (PathBuf::from(p), Vec::new()),
        None => (
            PathBuf::from("vendor/meridian-sdk"),
            crate::scaffold_sdk::files()?,
        ),
    };
    let file = name.replace('-', "_");
    let ty: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let files = [
        (
            "Cargo.toml",
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
meridian-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"
schemars = "1"

[profile.release]
opt-level = "s"
strip = true

# A workspace of its own, so it builds wherever it is put (the vendored SDK is a member).
[workspace]
"#,
                sdk = sdk.display()
            ),
        ),
        (
            ".cargo/config.toml",
            "# `cargo build-step`: the component. `cargo test` runs the logic on the host.\n[alias]\nbuild-step = \"build --release --target wasm32-wasip2\"\n".to_string(),
        ),
        (
            "README.md",
            format!(
                r#"# {name}

A Meridian workflow step: a WebAssembly component that runs sandboxed in `meridian run`.

```sh
cargo test           # the logic, on this machine, against the SDK's mock host
cargo build-step     # the component: target/wasm32-wasip2/release/{file}.wasm
meridian steps show target/wasm32-wasip2/release/{file}.wasm   # its inputs, outputs, grants
meridian run workflow.yaml
```

- `src/lib.rs`: `Input` (the step's `with:`, its JSON Schema derived), `Output` (what later steps
  read as `steps.<id>.outputs`), `run`, and the tests.
- Capabilities come from the workflow's `grants:` (http, sql, secrets, fs, kv, dns); ask for
  them in `manifest()` with `.needs(...)` so `meridian validate` can say what to grant.
- Plan mode (`meridian plan`) runs the same code with every change recorded instead of made.
- `vendor/`: the step SDK (`meridian-sdk`) and the WIT contract this `meridian` speaks.
"#
            ),
        ),
        (
            "workflow.yaml",
            format!(
                r#"# Run with: cargo build-step && meridian run workflow.yaml
name: try-{name}
steps:
  - id: {name}
    uses: ./target/wasm32-wasip2/release/{file}.wasm
    with: {{name: Ada}}
"#
            ),
        ),
        (
            "src/lib.rs",
            format!(
                r#"//! `{name}`: a Meridian workflow step.
//!
//! Test:  `cargo test` (on this machine, against the SDK's mock host).
//! Build: `cargo build-step` → `target/wasm32-wasip2/release/{file}.wasm`.
//! Use:   `uses: ./path/to/{file}.wasm` in a workflow; `meridian steps show` prints its schema.

use meridian_sdk::{{Ctx, Error, JsonSchema, ManifestInfo, Step}};
use serde::{{Deserialize, Serialize}};

/// The step's `with:` inputs (unknown keys are rejected by `meridian validate`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {{
    /// Who to greet.
    pub name: String,
}}

/// What later steps read as `steps.<id>.outputs`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {{
    pub message: String,
}}

pub struct {ty};

impl Step for {ty} {{
    type Input = Input;
    type Output = Output;

    fn manifest() -> ManifestInfo {{
        ManifestInfo::new("{name}", env!("CARGO_PKG_VERSION")).description("Describe what {name} does.")
    }}

    fn run(ctx: &Ctx, input: Input) -> Result<Output, Error> {{
        if input.name.is_empty() {{
            return Err(Error::invalid_input("with.name must not be empty"));
        }}
        ctx.log.info("running");
        Ok(Output {{ message: format!("hello, {{}}", input.name) }})
    }}
}}

meridian_sdk::export_step!({ty});

#[cfg(test)]
mod tests {{
    use std::sync::Arc;

    use meridian_sdk::testing::MockHost;
    use meridian_sdk::{{Invocation, run_with}};
    use serde_json::json;

    use super::{ty};

    #[test]
    fn greets() {{
        let out = run_with::<{ty}>(
            Invocation::for_test(&json!({{"name": "Ada"}})),
            Arc::new(MockHost::new()),
        )
        .unwrap();
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out["message"], "hello, Ada");
    }}

    #[test]
    fn an_empty_name_is_invalid_input() {{
        let e = run_with::<{ty}>(
            Invocation::for_test(&json!({{"name": ""}})),
            Arc::new(MockHost::new()),
        )
        .unwrap_err();
        assert!(e.message().contains("must not be empty"), "{{e}}");
    }}
}}
"#
            ),
        ),
    ];
    let vendored = vendored
        .into_iter()
        .map(|(rel, text)| (format!("vendor/{rel}"), text));
    for (rel, text) in files
        .into_iter()
        .map(|(rel, text)| (rel.to_string(), text))
        .chain(vendored)
    {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text)?;
    }
    outln!(
        "created step `{name}` in {d}\n  test:  cd {d} && cargo test\n  build: cd {d} && cargo build-step   (cargo build --release --target wasm32-wasip2)\n  use:   uses: {d}/target/wasm32-wasip2/release/{file}.wasm   (see {d}/workflow.yaml)\n  sdk:   {}",
        if std::env::var_os("MERIDIAN_SDK_PATH").is_some() {
            format!("{} (MERIDIAN_SDK_PATH)", sdk.display())
        } else {
            format!(
                "vendored in {}/vendor, the one this meridian carries",
                dir.display()
            )
        },
        d = dir.display(),
    )?;
    Ok(exit::OK)
}
