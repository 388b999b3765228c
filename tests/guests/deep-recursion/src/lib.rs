//! Recurses without bound: the host's wasm stack limit must turn it into a trap.
use meridian_sdk::{Ctx, Error, ManifestInfo, Step};

/// Deep recursion.
pub struct DeepRecursion;

#[inline(never)]
fn descend(depth: u64, acc: u64) -> u64 {
    // black_box keeps the call from being turned into a loop.
    let next = std::hint::black_box(acc.wrapping_mul(31).wrapping_add(depth));
    if std::hint::black_box(depth) == u64::MAX {
        return next;
    }
    descend(depth + 1, next).wrapping_add(1)
}

impl Step for DeepRecursion {
    type Input = serde_json::Value;
    type Output = serde_json::Value;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("deep-recursion", "0.1.0")
    }
    fn run(_ctx: &Ctx, _input: serde_json::Value) -> Result<serde_json::Value, Error> {
        Ok(serde_json::json!({ "result": descend(0, 1) }))
    }
}

meridian_sdk::export_step!(DeepRecursion);
