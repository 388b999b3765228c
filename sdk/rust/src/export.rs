//! Glue between the WIT exports and [`crate::Step`]; called by the `export_step!` expansion.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::bindings::meridian::step::types as wit;
use crate::ctx::{Ctx, Invocation, Mode};
use crate::host::{HostApi, WitHost};
use crate::{Error, Step};

/// `describe` for step `S`.
pub fn describe<S: Step>() -> wit::Manifest {
    let info = S::manifest();
    wit::Manifest {
        name: info.name,
        version: info.version,
        description: info.description,
        input_schema: schema_json::<S::Input>(),
        output_schema: schema_json::<S::Output>(),
        needs: info
            .needs
            .into_iter()
            .map(|n| wit::GrantRequest {
                kind: n.kind,
                detail: n.detail,
            })
            .collect(),
        supports_plan: info.supports_plan,
        supports_compensate: info.supports_compensate,
    }
}

/// `run` for step `S`: parse the input, run, serialise the output.
pub fn run<S: Step>(inv: wit::Invocation) -> Result<String, wit::StepError> {
    run_with::<S>(from_wit(inv), Arc::new(WitHost)).map_err(Into::into)
}

/// `compensate` for step `S`.
pub fn compensate<S: Step>(inv: wit::Invocation) -> Result<(), wit::StepError> {
    compensate_with::<S>(from_wit(inv), Arc::new(WitHost)).map_err(Into::into)
}

/// Runs step `S` against any host and returns its output JSON; what the component does, minus
/// the WIT layer. Unit tests call it with a [`crate::testing::MockHost`].
pub fn run_with<S: Step>(inv: Invocation, host: Arc<dyn HostApi>) -> Result<String, Error> {
    let input = parse_input::<S::Input>(&inv.input)?;
    let ctx = Ctx::new(inv, host);
    let output = S::run(&ctx, input)?;
    serde_json::to_string(&output)
        .map_err(|e| Error::fatal(format!("serialising the step output: {e}")))
}

/// Compensates step `S` against any host.
pub fn compensate_with<S: Step>(inv: Invocation, host: Arc<dyn HostApi>) -> Result<(), Error> {
    let input = parse_input::<S::Input>(&inv.input)?;
    let ctx = Ctx::new(inv, host);
    S::compensate(&ctx, input)
}

/// Deserialises the `with:` JSON; an empty or `null` input counts as `{}` so that steps whose
/// inputs all have defaults need no `with:`. Errors name the offending path, e.g. `expect.status`.
pub fn parse_input<T: DeserializeOwned>(json: &str) -> Result<T, Error> {
    let trimmed = json.trim();
    let json = if trimmed.is_empty() || trimmed == "null" {
        "{}"
    } else {
        json
    };
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Error::invalid_input(format!("with: {inner}"))
        } else {
            Error::invalid_input(format!("with.{path}: {inner}"))
        }
    })
}

fn schema_json<T: JsonSchema>() -> String {
    serde_json::to_string(&schemars::schema_for!(T)).unwrap_or_else(|_| "{}".to_owned())
}

fn from_wit(inv: wit::Invocation) -> Invocation {
    Invocation {
        run_id: inv.run_id,
        step_id: inv.step_id,
        attempt: inv.attempt,
        idempotency_key: inv.idempotency_key,
        mode: match inv.mode {
            wit::Mode::Apply => Mode::Apply,
            wit::Mode::Plan => Mode::Plan,
        },
        input: inv.input,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct In {
        name: String,
        expect: Expect,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Expect {
        status: u16,
    }

    #[test]
    fn input_errors_name_the_path() {
        let e = parse_input::<In>(r#"{"name":"x","expect":{"status":"two hundred"}}"#).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(
            e.message().starts_with("with.expect.status: invalid type"),
            "{}",
            e.message()
        );
        let e = parse_input::<In>("null").unwrap_err();
        assert!(
            e.message().contains("missing field `name`"),
            "{}",
            e.message()
        );
    }
}
