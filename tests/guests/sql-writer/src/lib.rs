//! Runs `with.statements` through `execute` and `with.queries` through `query` on
//! `with.connection`, reporting each result: in plan mode writes must be recorded, not done.
use meridian_sdk::{Ctx, Error, JsonSchema, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// Inputs.
#[derive(Deserialize, JsonSchema)]
pub struct Input {
    /// Connection name.
    pub connection: String,
    /// Statements for `execute`.
    #[serde(default)]
    pub statements: Vec<String>,
    /// Statements for `query`.
    #[serde(default)]
    pub queries: Vec<String>,
}

/// Outputs.
#[derive(Serialize, JsonSchema)]
pub struct Output {
    /// Per statement: `ok <rows affected>` or the error.
    pub executed: Vec<String>,
    /// Per query: the rows as JSON objects, or the error.
    pub queried: Vec<serde_json::Value>,
}

/// SQL writer.
pub struct SqlWriter;

impl Step for SqlWriter {
    type Input = Input;
    type Output = Output;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("sql-writer", "0.1.0")
    }
    fn run(ctx: &Ctx, input: Input) -> Result<Output, Error> {
        let sql = ctx.sql(&input.connection);
        let executed = input
            .statements
            .iter()
            .map(|s| match sql.execute(s, &[]) {
                Ok(n) => format!("ok {n}"),
                Err(e) => format!("error {e}"),
            })
            .collect();
        let queried = input
            .queries
            .iter()
            .map(|q| match sql.query(q, &[]) {
                Ok(rows) => serde_json::Value::Array(
                    rows.to_json()
                        .into_iter()
                        .map(serde_json::Value::Object)
                        .collect(),
                ),
                Err(e) => serde_json::Value::String(format!("error {e}")),
            })
            .collect();
        Ok(Output { executed, queried })
    }
}

meridian_sdk::export_step!(SqlWriter);
