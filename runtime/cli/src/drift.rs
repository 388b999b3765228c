//! `meridian drift WORKFLOW`: each region's gateway against the ADC files, per object.

use meridian_runner::Launch;
use meridian_runner::drift::{Drift, DriftState};

use crate::cli::RunArgs;
use crate::commands::{Ctx, fail, raw_inputs};
use crate::exit;
use crate::out::outln;

pub(crate) async fn drift(ctx: &Ctx, args: RunArgs) -> anyhow::Result<u8> {
    meridian_runner::files::check_workflow_file(&args.file).map_err(fail)?;
    let wf = meridian_runner::load(&args.file).map_err(fail)?;
    let (raw, commit) = raw_inputs(ctx, &wf, &args).await?;
    let runner = ctx.runner().await?;
    let mut launch = Launch {
        raw_inputs: raw,
        secrets_file: args.secrets_file.clone(),
        max_parallel: args.max_parallel,
        trigger: Some(format!("drift:{}", wf.workflow.name)),
        ..Launch::default()
    };
    // Held while the plan runs: no server sharing the journal takes it for an orphan.
    let _lease = crate::lease::RunLease::for_new_run(runner.journal().clone(), &mut launch)?;
    let d = runner
        .drift(&wf, launch, commit.map(|c| c.id))
        .await
        .map_err(fail)?;
    if ctx.json {
        outln!("{}", serde_json::to_string_pretty(&d)?)?;
    } else {
        print(&d)?;
    }
    Ok(match d.state {
        DriftState::InSync => exit::OK,
        DriftState::Drift => exit::FAILED,
        DriftState::Unknown => exit::INTERNAL,
    })
}

fn print(d: &Drift) -> anyhow::Result<()> {
    let against = d
        .commit
        .as_deref()
        .map(|c| format!(" against commit {}", &c[..c.len().min(12)]))
        .unwrap_or_default();
    let state = match d.state {
        DriftState::InSync => "IN SYNC",
        DriftState::Drift => "DRIFT",
        DriftState::Unknown => "UNKNOWN",
    };
    outln!(
        "{}: {state}{against} ({} ms; plan run {})",
        d.workflow,
        d.took_ms,
        d.run_id
    )?;
    for r in &d.regions {
        let region = if r.leg.is_empty() { &r.step } else { &r.leg };
        if r.objects.is_empty() {
            outln!("  {region:<12} in sync      {}", r.server)?;
            continue;
        }
        let n = r.objects.len();
        let differ = if n == 1 {
            "1 object differs".to_string()
        } else {
            format!("{n} objects differ")
        };
        outln!("  {region:<12} {differ}  {}", r.server)?;
        for o in &r.objects {
            let fields = if o.fields.is_empty() {
                String::new()
            } else {
                format!(" ({})", o.fields.join(", "))
            };
            outln!("    {:<8} {} {}{fields}", o.kind, o.resource_type, o.name)?;
        }
    }
    for e in &d.errors {
        outln!("  error: {e}")?;
    }
    Ok(())
}
