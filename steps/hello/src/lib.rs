//! `hello`: greets `with.name` and outputs `{greeting}`. The smallest step worth running: it
//! proves the contract end to end (describe, input parsing, logging, output).

use meridian_sdk::{Ctx, Error, JsonSchema, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// Inputs of `hello`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Who to greet.
    #[serde(default = "default_name")]
    pub name: String,
}

fn default_name() -> String {
    "world".to_owned()
}

/// Outputs of `hello`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// `Hello, <name>!`
    pub greeting: String,
}

/// The step.
pub struct Hello;

impl Step for Hello {
    type Input = Input;
    type Output = Output;

    fn manifest() -> ManifestInfo {
        ManifestInfo::new("hello", env!("CARGO_PKG_VERSION")).description("Greets `with.name`.")
    }

    fn run(ctx: &Ctx, input: Input) -> Result<Output, Error> {
        if input.name.trim().is_empty() {
            return Err(Error::invalid_input("with.name must not be empty"));
        }
        ctx.log.log(
            meridian_sdk::Level::Info,
            "greeting",
            &[("name", &input.name)],
        );
        Ok(Output {
            greeting: format!("Hello, {}!", input.name),
        })
    }
}

meridian_sdk::export_step!(Hello);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use meridian_sdk::testing::MockHost;
    use meridian_sdk::{ErrorKind, Invocation, run_with};

    use super::Hello;

    #[test]
    fn greets_and_logs() {
        let host = Arc::new(MockHost::new());
        let out = run_with::<Hello>(
            Invocation::for_test(&serde_json::json!({"name": "Ada"})),
            host.clone(),
        )
        .unwrap();
        assert_eq!(out, r#"{"greeting":"Hello, Ada!"}"#);
        assert_eq!(host.logs().len(), 1);
    }

    #[test]
    fn rejects_unknown_and_empty() {
        let host = Arc::new(MockHost::new());
        let e = run_with::<Hello>(
            Invocation::for_test(&serde_json::json!({"nam": "x"})),
            host.clone(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = run_with::<Hello>(
            Invocation::for_test(&serde_json::json!({"name": " "})),
            host,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
