//! Queries `with.connection`, which the test does not grant; outputs the error it got.
use meridian_sdk::{Ctx, Error, JsonSchema, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// Inputs.
#[derive(Deserialize, JsonSchema)]
pub struct Input {
    /// Connection name to try.
    pub connection: String,
}

/// Outputs.
#[derive(Serialize, JsonSchema)]
pub struct Output {
    /// `ok` or the error text.
    pub result: String,
}

/// SQL without a grant.
pub struct SqlNotGranted;

impl Step for SqlNotGranted {
    type Input = Input;
    type Output = Output;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("sql-not-granted", "0.1.0")
    }
    fn run(ctx: &Ctx, input: Input) -> Result<Output, Error> {
        let result = match ctx.sql(&input.connection).query("SELECT 1", &[]) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        Ok(Output { result })
    }
}

meridian_sdk::export_step!(SqlNotGranted);
