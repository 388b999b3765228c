//! The component glue of the family steps: adapts a `meridian_sdk::Ctx` to an [`Env`] and runs
//! a vendor's `run`/`compensate` with the undo bookkeeping every GSLB step shares.
//!
//! Undo is kept in the run's kv store under `gslb/undo/<step id>`, written **before** the first
//! attempt changes anything (from a read-only status pass) and never overwritten by later
//! attempts, so a failover that failed half-way and was retried still compensates back to the
//! state before the first attempt. `compensate` reads it, restores, and deletes the key.

use meridian_sdk::{Ctx, Error, ErrorKind, GrantKind, ManifestInfo};

use crate::env::{Clock, Env, Log, Secrets, StdClock};
use crate::error::StepError;
use crate::gslb::{GslbAction, GslbInput, GslbOutput, RoutingState, Undo};
use crate::region::{KvMemo, Memo, RegionInput, RegionOutput};

/// A vendor's `run`.
pub type RunFn = fn(&Env<'_>, &GslbInput) -> Result<GslbOutput, StepError>;
/// A vendor's `compensate`.
pub type CompensateFn =
    fn(&Env<'_>, &GslbInput, Option<&Undo>) -> Result<Option<GslbOutput>, StepError>;

/// A region vendor's `run`; the `bool` is plan mode.
pub type RegionRunFn =
    fn(&Env<'_>, &dyn Memo, &RegionInput, bool) -> Result<RegionOutput, StepError>;

/// [`Secrets`] through the host's `secrets` interface (granted names only).
#[derive(Clone, Copy)]
pub struct SdkSecrets<'a>(pub &'a Ctx);

impl Secrets for SdkSecrets<'_> {
    fn get(&self, name: &str) -> Result<String, String> {
        self.0.secret(name).map_err(|e| e.message().to_owned())
    }
}

/// [`Log`] through the host's `log` interface.
#[derive(Clone, Copy)]
pub struct SdkLog<'a>(pub &'a Ctx);

impl Log for SdkLog<'_> {
    fn info(&self, msg: &str) {
        self.0.log.info(msg);
    }
    fn warn(&self, msg: &str) {
        self.0.log.warn(msg);
    }
}

/// Runs `f` with an [`Env`] over `ctx` (host http, secrets, log; WASI clocks).
pub fn with_env<T>(ctx: &Ctx, f: impl FnOnce(&Env<'_>) -> T) -> T {
    with_env_clock(ctx, &StdClock, f)
}

fn with_env_clock<T>(ctx: &Ctx, clock: &dyn Clock, f: impl FnOnce(&Env<'_>) -> T) -> T {
    let http = ctx.http();
    let secrets = SdkSecrets(ctx);
    let log = SdkLog(ctx);
    let env = Env {
        http: &http,
        secrets: &secrets,
        clock,
        log: &log,
    };
    f(&env)
}

/// The SDK error for a family error, same kind and message.
pub fn to_sdk_error(e: StepError) -> Error {
    match e {
        StepError::Retryable(m) => Error::retryable(m),
        StepError::Fatal(m) => Error::fatal(m),
        StepError::InvalidInput(m) => Error::invalid_input(m),
    }
}

/// The family error for an SDK error.
pub fn from_sdk_error(e: &Error) -> StepError {
    match e.kind() {
        ErrorKind::Retryable => StepError::retryable(e.message()),
        ErrorKind::Fatal => StepError::fatal(e.message()),
        ErrorKind::InvalidInput => StepError::invalid(e.message()),
    }
}

/// The kv key holding a step's undo state.
pub fn undo_key(ctx: &Ctx) -> String {
    format!("gslb/undo/{}", ctx.invocation().step_id)
}

/// The component's `run` for a GSLB vendor: records the undo state before the first change,
/// runs, and reports the first recorded undo.
pub fn run_gslb(ctx: &Ctx, input: &GslbInput, run: RunFn) -> Result<GslbOutput, Error> {
    run_gslb_with_clock(ctx, &StdClock, input, run)
}

/// [`run_gslb`] with an explicit clock (tests).
pub fn run_gslb_with_clock(
    ctx: &Ctx,
    clock: &dyn Clock,
    input: &GslbInput,
    run: RunFn,
) -> Result<GslbOutput, Error> {
    with_env_clock(ctx, clock, |env| {
        let key = undo_key(ctx);
        let mut recorded: Option<Undo> = match ctx.kv().get_json(&key) {
            Ok(u) => u,
            Err(e) => {
                env.log
                    .warn(&format!("ignoring unreadable undo state `{key}`: {e}"));
                None
            }
        };
        let changes_routing = matches!(input.action, GslbAction::Failover | GslbAction::SetWeights);
        if recorded.is_none() && changes_routing && !ctx.is_plan() {
            // A read-only pass first, so the undo kept is the state before any attempt changed it.
            let mut status = input.clone();
            status.action = GslbAction::Status;
            match run(env, &status) {
                Ok(before) => {
                    let state = RoutingState { order: before.order, weights: before.weights };
                    if let Some(u) = input.undo_for(&state) {
                        ctx.kv().set_json(&key, &u)?;
                        recorded = Some(u);
                    }
                }
                Err(e) => env.log.warn(&format!("could not read the state before the change ({e}); undo will use the step's own reading")),
            }
        }
        let mut out = run(env, input).map_err(to_sdk_error)?;
        match recorded {
            Some(u) => out.undo = Some(u),
            None => {
                if let (Some(u), false) = (&out.undo, out.planned) {
                    ctx.kv().set_json(&key, u)?;
                }
            }
        }
        Ok(out)
    })
}

/// The component's `compensate` for a GSLB vendor: restores the recorded undo state (or the
/// declared one) and forgets it.
pub fn compensate_gslb(
    ctx: &Ctx,
    input: &GslbInput,
    compensate: CompensateFn,
) -> Result<(), Error> {
    with_env(ctx, |env| {
        let key = undo_key(ctx);
        let undo: Option<Undo> = ctx.kv().get_json(&key).unwrap_or(None);
        match compensate(env, input, undo.as_ref()).map_err(to_sdk_error)? {
            Some(out) => {
                env.log.info(&format!(
                    "compensated: {} now answers {}",
                    out.record,
                    out.active.join(", ")
                ));
                ctx.kv().delete(&key);
            }
            None => env.log.info("nothing to compensate for this action"),
        }
        Ok(())
    })
}

/// The manifest every GSLB step shares, with the vendor's name, description and needs.
pub fn gslb_manifest(
    name: &str,
    version: &str,
    description: &str,
    needs: &[(GrantKind, &str)],
) -> ManifestInfo {
    let mut m = ManifestInfo::new(name, version)
        .description(description)
        .supports_plan(true)
        .supports_compensate(true);
    for (kind, detail) in needs {
        m = m.needs(*kind, *detail);
    }
    m
}

/// The component's `run` for a region vendor: the vendor's `run` over the host env, with the
/// run's kv store as its [`Memo`] and the invocation's plan mode.
pub fn run_region(ctx: &Ctx, input: &RegionInput, run: RegionRunFn) -> Result<RegionOutput, Error> {
    let memo = KvMemo(ctx);
    with_env(ctx, |env| run(env, &memo, input, ctx.is_plan())).map_err(to_sdk_error)
}

/// Declares a GSLB vendor's component: a unit struct `$step` whose `meridian_sdk::Step` impl
/// takes the family input and output, builds its manifest with [`gslb_manifest`] (version: the
/// calling crate's), runs through [`run_gslb`] / [`compensate_gslb`] with the vendor's `run` and
/// `compensate`, and is exported with `meridian_sdk::export_step!`. The calling crate must
/// depend on `meridian-sdk`.
#[macro_export]
macro_rules! gslb_step {
    (
        $(#[$meta:meta])*
        $step:ident {
            name: $name:expr,
            description: $description:expr,
            needs: $needs:expr,
            run: $run:path,
            compensate: $compensate:path $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $step;

        impl ::meridian_sdk::Step for $step {
            type Input = $crate::gslb::GslbInput;
            type Output = $crate::gslb::GslbOutput;

            fn manifest() -> ::meridian_sdk::ManifestInfo {
                $crate::sdk::gslb_manifest($name, env!("CARGO_PKG_VERSION"), $description, $needs)
            }

            fn run(
                ctx: &::meridian_sdk::Ctx,
                input: $crate::gslb::GslbInput,
            ) -> ::core::result::Result<$crate::gslb::GslbOutput, ::meridian_sdk::Error> {
                $crate::sdk::run_gslb(ctx, &input, $run)
            }

            fn compensate(
                ctx: &::meridian_sdk::Ctx,
                input: $crate::gslb::GslbInput,
            ) -> ::core::result::Result<(), ::meridian_sdk::Error> {
                $crate::sdk::compensate_gslb(ctx, &input, $compensate)
            }
        }

        ::meridian_sdk::export_step!($step);
    };
}

/// Declares a region vendor's component: a unit struct `$step` whose `meridian_sdk::Step` impl
/// takes the family input and output, answers `manifest` with the given expression (evaluated in
/// the calling crate, so `env!("CARGO_PKG_VERSION")` there is its own) and runs through
/// [`run_region`] with the vendor's `run`; exported with `meridian_sdk::export_step!`. Region
/// steps do not compensate. The calling crate must depend on `meridian-sdk`.
#[macro_export]
macro_rules! region_step {
    (
        $(#[$meta:meta])*
        $step:ident {
            manifest: $manifest:expr,
            run: $run:path $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $step;

        impl ::meridian_sdk::Step for $step {
            type Input = $crate::region::RegionInput;
            type Output = $crate::region::RegionOutput;

            fn manifest() -> ::meridian_sdk::ManifestInfo {
                $manifest
            }

            fn run(
                ctx: &::meridian_sdk::Ctx,
                input: $crate::region::RegionInput,
            ) -> ::core::result::Result<$crate::region::RegionOutput, ::meridian_sdk::Error> {
                $crate::sdk::run_region(ctx, &input, $run)
            }
        }

        ::meridian_sdk::export_step!($step);
    };
}
