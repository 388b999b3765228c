//! `meridian new step`: scaffolding.

use std::path::{Path, PathBuf};

use crate::out::outln;
use crate::{Exit, exit};

/// `meridian new step NAME`: a step crate that builds as is with
/// `cargo build --release` (its `.cargo/config.toml` selects wasm32-wasip2).
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
    let sdk = sdk_path().ok_or_else(|| {
        Exit::invalid(
            "error: cannot find the Meridian SDK (sdk/rust); set MERIDIAN_SDK_PATH to its directory",
        )
    })?;
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

# A workspace of its own, so it builds wherever it is put.
[workspace]
"#,
                sdk = sdk.display()
            ),
        ),
        (
            ".cargo/config.toml",
            "[build]\ntarget = \"wasm32-wasip2\"\n".to_string(),
        ),
        (
            "src/lib.rs",
            format!(
                r#"//! `{name}`: a Meridian workflow step.
//!
//! Build: `cargo build --release` → `target/wasm32-wasip2/release/{file}.wasm`.
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
"#,
                file = name.replace('-', "_")
            ),
        ),
    ];
    for (rel, text) in files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text)?;
    }
    outln!(
        "created step `{name}` in {}\n  build: cd {} && cargo build --release\n  use:   uses: {}/target/wasm32-wasip2/release/{}.wasm",
        dir.display(),
        dir.display(),
        dir.display(),
        name.replace('-', "_")
    )?;
    Ok(exit::OK)
}

/// The guest SDK: `MERIDIAN_SDK_PATH`, else the checkout this binary was built from.
fn sdk_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MERIDIAN_SDK_PATH") {
        return Some(PathBuf::from(p));
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/rust");
    std::fs::canonicalize(built).ok()
}
