//! Tries to read each path in `with.paths` and reports what happened; the host must let only
//! paths under a granted preopen through.
use meridian_sdk::{Ctx, Error, JsonSchema, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// Inputs.
#[derive(Deserialize, JsonSchema)]
pub struct Input {
    /// Paths to try.
    pub paths: Vec<String>,
}

/// One attempt.
#[derive(Serialize, JsonSchema)]
pub struct Attempt {
    /// The path tried.
    pub path: String,
    /// Bytes read, if it worked.
    pub read: Option<usize>,
    /// The error, if it did not.
    pub error: Option<String>,
}

/// Outputs.
#[derive(Serialize, JsonSchema)]
pub struct Output {
    /// One entry per input path, plus `env` and `args` to show they are empty.
    pub attempts: Vec<Attempt>,
    /// Environment variables the guest sees.
    pub env: Vec<String>,
    /// Arguments the guest sees.
    pub args: Vec<String>,
}

/// Filesystem escape attempts.
pub struct ReadOutsidePreopen;

impl Step for ReadOutsidePreopen {
    type Input = Input;
    type Output = Output;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("read-outside-preopen", "0.1.0")
    }
    fn run(_ctx: &Ctx, input: Input) -> Result<Output, Error> {
        let attempts = input
            .paths
            .into_iter()
            .map(|path| match std::fs::read(&path) {
                Ok(b) => Attempt {
                    path,
                    read: Some(b.len()),
                    error: None,
                },
                Err(e) => Attempt {
                    path,
                    read: None,
                    error: Some(e.to_string()),
                },
            })
            .collect();
        Ok(Output {
            attempts,
            env: std::env::vars().map(|(k, _)| k).collect(),
            args: std::env::args().collect(),
        })
    }
}

meridian_sdk::export_step!(ReadOutsidePreopen);
