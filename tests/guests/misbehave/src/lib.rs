//! Ends in ways whose cause the host must name: `exit(0)` from inside a step, more planned
//! changes than the sandbox keeps, and a shadow-stack overflow (deep recursion with large
//! locals, which in Rust's wasm32 layout runs below address 0 of linear memory), and a
//! file-descriptor bomb (every file of a directory opened and held, over and over), and an
//! output that breaks the output schema it declares (`wrong-output`), a probe for what an
//! earlier instance left in linear memory (`residue`), and a log flood (`log-flood`).
use meridian_sdk::schemars::{Schema, SchemaGenerator, json_schema};
use meridian_sdk::{Ctx, Error, JsonSchema, ManifestInfo, Step};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Inputs.
#[derive(Deserialize, JsonSchema)]
pub struct Input {
    /// `exit`, `plan-flood`, `shadow-stack`, `fd-bomb`, `wrong-output`, `residue` or
    /// `log-flood`.
    pub what: String,
    /// For `fd-bomb`: the file to open again and again, holding every handle.
    #[serde(default)]
    pub path: String,
    /// For `fd-bomb`: how many times to open it; for `log-flood`: how many lines to log.
    #[serde(default)]
    pub count: u64,
    /// For `plan-flood`: the base URL to "write" to (plan mode records, sends nothing).
    #[serde(default)]
    pub base: String,
}

/// What it reports: one count, by the name of the mode. Its schema is written by hand so that
/// `wrong-output` can break it (a derived schema always matches what serde writes).
#[derive(Serialize)]
pub struct Report(serde_json::Value);

impl JsonSchema for Report {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Report".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "recorded": {"type": "integer"},
                "depth": {"type": "integer"},
                "held": {"type": "integer"},
                "residue": {"type": "integer"},
                "probe": {"type": "integer"}
            }
        })
    }
}

/// Zero in a fresh instance (in `.bss`); `residue` writes here.
static ZEROED: [AtomicU64; 512] = [const { AtomicU64::new(0) }; 512];
/// In a fresh instance, as the data segment has it; `residue` overwrites it.
const FRESH: u64 = 0x6672_6573_682d_6461;
static DATA: AtomicU64 = AtomicU64::new(FRESH);

/// Counts the places where an earlier instance's writes show: the zeroed static, the data
/// segment's bytes, 256 KiB of zeroed heap (the allocator takes memory from `memory.grow` as
/// zero and does not clear it); then writes all three, for the next instance to find.
fn residue() -> u64 {
    let mut found = 0;
    found += u64::from(ZEROED.iter().any(|w| w.load(Ordering::Relaxed) != 0));
    found += u64::from(DATA.load(Ordering::Relaxed) != FRESH);
    ZEROED
        .iter()
        .for_each(|w| w.store(u64::MAX, Ordering::Relaxed));
    DATA.store(u64::MAX, Ordering::Relaxed);
    let mut heap = std::hint::black_box(vec![0u8; 256 << 10]);
    found += u64::from(heap.iter().any(|b| *b != 0));
    heap.fill(0xAB);
    // Leaked: freed, the next allocation would be cleared by the allocator, not the runtime.
    std::mem::forget(std::hint::black_box(heap));
    found
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
    type Output = Report;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("misbehave", "0.1.0").supports_plan(true)
    }
    fn run(ctx: &Ctx, input: Input) -> Result<Report, Error> {
        let out = match input.what.as_str() {
            "exit" => std::process::exit(0),
            "plan-flood" => {
                let http = ctx.http();
                for i in 0..10_001 {
                    http.post_json(
                        &format!("{}/routes", input.base),
                        &serde_json::json!({"i": i}),
                    )?;
                }
                serde_json::json!({"recorded": 10_001})
            }
            "shadow-stack" => serde_json::json!({"depth": deep(0)}),
            "fd-bomb" => {
                let mut held = Vec::new();
                for _ in 0..input.count {
                    let f = std::fs::File::open(&input.path)
                        .map_err(|e| Error::fatal(format!("open #{}: {e}", held.len() + 1)))?;
                    held.push(f);
                }
                serde_json::json!({"held": held.len()})
            }
            // The second probe, in this instance, must find all three: the probe can see.
            // `count` lines of 100 bytes, the last one `last line`, then a failure.
            "log-flood" => {
                for i in 0..input.count.saturating_sub(1) {
                    ctx.log.info(&format!("line {i:>8} {}", "x".repeat(86)));
                }
                ctx.log.info("last line");
                return Err(Error::fatal("flooded"));
            }
            "residue" => serde_json::json!({"residue": residue(), "probe": residue()}),
            "wrong-output" => serde_json::json!({"recorded": "many", "held": 1, "token": "s3cr3t"}),
            other => return Err(Error::invalid_input(format!("unknown `what`: {other}"))),
        };
        Ok(Report(out))
    }
}

meridian_sdk::export_step!(Misbehave);
