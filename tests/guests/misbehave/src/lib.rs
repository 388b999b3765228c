//! Ends in ways whose cause the host must name: `exit(0)` from inside a step, more planned
//! changes than the sandbox keeps, and a shadow-stack overflow (deep recursion with large
//! locals, which in Rust's wasm32 layout runs below address 0 of linear memory), and a
//! file-descriptor bomb (every file of a directory opened and held, over and over).
use meridian_sdk::{Ctx, Error, JsonSchema, ManifestInfo, Step};
use serde::Deserialize;

/// Inputs.
#[derive(Deserialize, JsonSchema)]
pub struct Input {
    /// `exit`, `plan-flood`, `shadow-stack` or `fd-bomb`.
    pub what: String,
    /// For `fd-bomb`: the file to open again and again, holding every handle.
    #[serde(default)]
    pub path: String,
    /// For `fd-bomb`: how many times to open it.
    #[serde(default)]
    pub count: u64,
    /// For `plan-flood`: the base URL to "write" to (plan mode records, sends nothing).
    #[serde(default)]
    pub base: String,
}

/// Misbehaves as asked.
pub struct Misbehave;

#[inline(never)]
fn deep(depth: u64) -> u64 {
    // 16 KiB of locals per frame, kept alive by black_box: the shadow stack runs out long
    // before the wasm call stack does.
    let mut frame = [0u8; 16 * 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let frame = std::hint::black_box(frame);
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    deep(depth + 1).wrapping_add(u64::from(frame[7]))
}

impl Step for Misbehave {
    type Input = Input;
    type Output = serde_json::Value;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("misbehave", "0.1.0").supports_plan(true)
    }
    fn run(ctx: &Ctx, input: Input) -> Result<serde_json::Value, Error> {
        match input.what.as_str() {
            "exit" => std::process::exit(0),
            "plan-flood" => {
                let http = ctx.http();
                for i in 0..10_001 {
                    http.post_json(
                        &format!("{}/routes", input.base),
                        &serde_json::json!({"i": i}),
                    )?;
                }
                Ok(serde_json::json!({"recorded": 10_001}))
            }
            "shadow-stack" => Ok(serde_json::json!({"depth": deep(0)})),
            "fd-bomb" => {
                let mut held = Vec::new();
                for _ in 0..input.count {
                    let f = std::fs::File::open(&input.path)
                        .map_err(|e| Error::fatal(format!("open #{}: {e}", held.len() + 1)))?;
                    held.push(f);
                }
                Ok(serde_json::json!({"held": held.len()}))
            }
            other => Err(Error::invalid_input(format!("unknown `what`: {other}"))),
        }
    }
}

meridian_sdk::export_step!(Misbehave);
