//! Allocates and touches 1 MiB blocks until the memory cap stops it.
use meridian_sdk::{Ctx, Error, ManifestInfo, Step};

/// Memory bomb.
pub struct MemoryBomb;

impl Step for MemoryBomb {
    type Input = serde_json::Value;
    type Output = serde_json::Value;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("memory-bomb", "0.1.0")
    }
    fn run(_ctx: &Ctx, _input: serde_json::Value) -> Result<serde_json::Value, Error> {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        // Bounded only by memory: 64 Ki blocks of 1 MiB would be 64 GiB, far past any cap.
        for i in 0..65_536u32 {
            blocks.push(vec![u8::try_from(i % 251).unwrap_or(0) | 1; 1 << 20]);
        }
        Ok(serde_json::json!({ "blocks": std::hint::black_box(blocks).len() }))
    }
}

meridian_sdk::export_step!(MemoryBomb);
