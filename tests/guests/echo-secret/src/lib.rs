//! Leaks a granted secret every way it can: log line, log field, stdout, stderr, output, and
//! (with `with.fail`) the error message. The host must mask all of them.
use meridian_sdk::{Ctx, Error, JsonSchema, Level, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// Inputs.
#[derive(Deserialize, JsonSchema)]
pub struct Input {
    /// Secret name.
    pub name: String,
    /// Fail with the secret in the error message.
    #[serde(default)]
    pub fail: bool,
}

/// Outputs.
#[derive(Serialize, JsonSchema)]
pub struct Output {
    /// The secret, in clear (the host masks it).
    pub leaked: String,
    /// The secret inside a longer string.
    pub sentence: String,
}

/// Secret leaker.
pub struct EchoSecret;

impl Step for EchoSecret {
    type Input = Input;
    type Output = Output;
    fn manifest() -> ManifestInfo {
        ManifestInfo::new("echo-secret", "0.1.0")
    }
    fn run(ctx: &Ctx, input: Input) -> Result<Output, Error> {
        let s = ctx.secret(&input.name)?;
        ctx.log.log(
            Level::Info,
            &format!("the secret is {s}"),
            &[("secret", &s)],
        );
        println!("stdout: {s}");
        eprintln!("stderr: {s}");
        if input.fail {
            return Err(Error::fatal(format!("failed while holding {s}")));
        }
        Ok(Output {
            sentence: format!("token={s};"),
            leaked: s,
        })
    }
}

meridian_sdk::export_step!(EchoSecret);
