//! Spins forever without calling the host: only the epoch deadline can stop it.
use meridian_sdk::{Ctx, Error, ManifestInfo, Step};

/// Infinite loop.
pub struct LoopForever;

impl Step for LoopForever {
    type Input = serde_json::Value;
    type Output = serde_json::Value;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("loop-forever", "0.1.0")
    }
    fn run(_ctx: &Ctx, _input: serde_json::Value) -> Result<serde_json::Value, Error> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

meridian_sdk::export_step!(LoopForever);
