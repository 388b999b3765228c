//! Writes `with.content` to `with.path` and reads it back; in plan mode or under a read-only
//! preopen the write must fail.
use meridian_sdk::{Ctx, Error, JsonSchema, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// Inputs.
#[derive(Deserialize, JsonSchema)]
pub struct Input {
    /// Guest path to write.
    pub path: String,
    /// Content.
    #[serde(default)]
    pub content: String,
    /// Instead of writing: make `path` a symbolic link to this target.
    #[serde(default)]
    pub symlink_to: Option<String>,
}

/// Outputs.
#[derive(Serialize, JsonSchema)]
pub struct Output {
    /// `ok` or the error.
    pub write: String,
    /// What reading the path back returned, or the error.
    pub read_back: String,
}

/// File writer.
pub struct FsWriter;

impl Step for FsWriter {
    type Input = Input;
    type Output = Output;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("fs-writer", "0.1.0")
    }
    fn run(_ctx: &Ctx, input: Input) -> Result<Output, Error> {
        if let Some(target) = &input.symlink_to {
            // `soft_link` is the stable way to make a symlink on WASI (deprecated elsewhere).
            #[allow(deprecated)]
            let made = std::fs::soft_link(target, &input.path);
            let write = match made {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.to_string(),
            };
            return Ok(Output {
                write,
                read_back: String::new(),
            });
        }
        let write = match std::fs::write(&input.path, input.content.as_bytes()) {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        let read_back = match std::fs::read_to_string(&input.path) {
            Ok(s) => s,
            Err(e) => format!("error {e}"),
        };
        Ok(Output { write, read_back })
    }
}

meridian_sdk::export_step!(FsWriter);
