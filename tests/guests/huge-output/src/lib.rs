//! Returns an output of `with.bytes` bytes (default 100 MB).
use meridian_sdk::{Ctx, Error, JsonSchema, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// Inputs.
#[derive(Deserialize, JsonSchema)]
pub struct Input {
    /// Size of the `blob` output string.
    #[serde(default = "default_bytes")]
    pub bytes: usize,
}

fn default_bytes() -> usize {
    100_000_000
}

/// Outputs.
#[derive(Serialize, JsonSchema)]
pub struct Output {
    /// `x` repeated.
    pub blob: String,
}

/// Huge output.
pub struct HugeOutput;

impl Step for HugeOutput {
    type Input = Input;
    type Output = Output;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("huge-output", "0.1.0")
    }
    fn run(_ctx: &Ctx, input: Input) -> Result<Output, Error> {
        Ok(Output {
            blob: "x".repeat(input.bytes),
        })
    }
}

meridian_sdk::export_step!(HugeOutput);
