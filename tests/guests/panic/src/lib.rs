//! Panics with `with.message`.
use meridian_sdk::{Ctx, Error, JsonSchema, ManifestInfo, Step};
use serde::Deserialize;

/// Inputs.
#[derive(Deserialize, JsonSchema)]
pub struct Input {
    /// Panic message.
    #[serde(default)]
    pub message: Option<String>,
}

/// Panicking step.
pub struct Panic;

impl Step for Panic {
    type Input = Input;
    type Output = serde_json::Value;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("panic", "0.1.0")
    }
    fn run(_ctx: &Ctx, input: Input) -> Result<serde_json::Value, Error> {
        panic!(
            "{}",
            input
                .message
                .unwrap_or_else(|| "guest panicked on purpose".to_owned())
        );
    }
}

meridian_sdk::export_step!(Panic);
