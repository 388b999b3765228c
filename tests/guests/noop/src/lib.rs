//! Does nothing and returns `{}`: the baseline for per-step overhead benchmarks.
use meridian_sdk::{Ctx, Error, ManifestInfo, Step};

/// No-op step.
pub struct Noop;

impl Step for Noop {
    type Input = serde_json::Value;
    type Output = serde_json::Map<String, serde_json::Value>;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("noop", "0.1.0")
    }
    fn run(_ctx: &Ctx, _input: serde_json::Value) -> Result<Self::Output, Error> {
        Ok(serde_json::Map::new())
    }
}

meridian_sdk::export_step!(Noop);
