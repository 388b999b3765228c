//! Reads with GET, then writes with POST and PUT and DELETE: in plan mode the host must let the
//! GET through and record the rest.
use meridian_sdk::{Ctx, Error, JsonSchema, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// Inputs.
#[derive(Deserialize, JsonSchema)]
pub struct Input {
    /// Base URL, e.g. `http://127.0.0.1:1234`.
    pub base: String,
}

/// One exchange.
#[derive(Serialize, JsonSchema)]
pub struct Exchange {
    /// Method.
    pub method: String,
    /// Status received.
    pub status: u16,
    /// Whether plan mode recorded it.
    pub recorded: bool,
    /// Body received.
    pub body: String,
}

/// Outputs.
#[derive(Serialize, JsonSchema)]
pub struct Output {
    /// In order: GET, POST, PUT, DELETE.
    pub exchanges: Vec<Exchange>,
}

/// HTTP writer.
pub struct HttpWriter;

impl Step for HttpWriter {
    type Input = Input;
    type Output = Output;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("http-writer", "0.1.0")
    }
    fn run(ctx: &Ctx, input: Input) -> Result<Output, Error> {
        let http = ctx.http();
        let url = format!("{}/routes/r1", input.base);
        let body = serde_json::json!({"uri": "/hello", "upstream": {"nodes": {"127.0.0.1:9": 1}}});
        let responses = [
            ("GET", http.get(&url)?),
            (
                "POST",
                http.post_json(&format!("{}/routes", input.base), &body)?,
            ),
            ("PUT", http.put_json(&url, &body)?),
            ("DELETE", http.delete(&url)?),
        ];
        let exchanges = responses
            .into_iter()
            .map(|(m, r)| Exchange {
                method: m.to_owned(),
                status: r.status,
                recorded: r.recorded,
                body: r.text(),
            })
            .collect();
        Ok(Output { exchanges })
    }
}

meridian_sdk::export_step!(HttpWriter);
