//! `meridian-lab`: the lab without the rest of Meridian, for manual use and for this crate's
//! tests (`meridian lab …` in the main CLI calls the same library functions).
//!
//! ```text
//! meridian-lab up [--dir D] [--regions eu,us] [--with-moto] [--capacity N] [--standby-capacity M]
//!                  [--instance-start-ms T]
//! meridian-lab status [--dir D]
//! meridian-lab region <name> start|stop|kill|rebuild-standby|scale [--from R] [--instances N] [--dir D]
//! meridian-lab down [--dir D]
//! meridian-lab daemon --dir D        # what `up` spawns
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meridian_lab::{LabConfig, LabError, Launcher, RegionAction};

#[derive(Parser)]
#[command(name = "meridian-lab", about = "The local multi-region Meridian lab")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the lab (or print the state of the one already running).
    Up {
        #[arg(long, default_value = ".meridian/lab")]
        dir: PathBuf,
        /// Region names, first = primary.
        #[arg(long, value_delimiter = ',', default_value = "eu,us")]
        regions: Vec<String>,
        /// Also start moto (Route 53 API).
        #[arg(long)]
        with_moto: bool,
        #[command(flatten)]
        capacity: meridian_lab::CapacityArgs,
    },
    /// Print the lab state as JSON.
    Status {
        #[arg(long, default_value = ".meridian/lab")]
        dir: PathBuf,
    },
    /// Start, stop, kill, rebuild or scale one region.
    Region {
        name: String,
        /// start | stop | kill | rebuild-standby | scale
        action: String,
        /// With rebuild-standby: the region to copy from.
        #[arg(long)]
        from: Option<String>,
        /// With scale: the data-plane instances to run.
        #[arg(long)]
        instances: Option<u32>,
        #[arg(long, default_value = ".meridian/lab")]
        dir: PathBuf,
    },
    /// Stop the lab; nothing is left running.
    Down {
        #[arg(long, default_value = ".meridian/lab")]
        dir: PathBuf,
    },
    /// Run the daemon in the foreground (spawned by `up`).
    Daemon {
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print(state: &meridian_lab::LabState) -> Result<(), LabError> {
    let json = serde_json::to_string_pretty(state)
        .map_err(|e| LabError::State(format!("printing the state: {e}")))?;
    // A closed pipe (`| head`) is not an error worth a panic.
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{json}");
    Ok(())
}

fn run(cli: Cli) -> Result<(), LabError> {
    match cli.cmd {
        Cmd::Up {
            dir,
            regions,
            with_moto,
            capacity,
        } => {
            let mut cfg = LabConfig::new(dir);
            cfg.regions = regions;
            cfg.with_moto = with_moto;
            capacity.apply(&mut cfg);
            let exe = std::env::current_exe()
                .map_err(|e| LabError::State(format!("locating this executable: {e}")))?;
            print(&meridian_lab::up(&cfg, &Launcher::new(exe, ["daemon"]))?)
        }
        Cmd::Status { dir } => print(&meridian_lab::status(&dir)?),
        Cmd::Region {
            name,
            action,
            from,
            instances,
            dir,
        } => {
            let action = match (action.as_str(), from) {
                ("scale", _) => RegionAction::Scale {
                    instances: instances
                        .ok_or_else(|| LabError::Invalid("scale needs --instances <n>".into()))?,
                },
                ("start", _) => RegionAction::Start,
                ("stop", _) => RegionAction::Stop,
                ("kill", _) => RegionAction::Kill,
                ("rebuild-standby", Some(from)) => RegionAction::RebuildStandby { from },
                ("rebuild-standby", None) => {
                    return Err(LabError::Invalid(
                        "rebuild-standby needs --from <region>".into(),
                    ));
                }
                (other, _) => {
                    return Err(LabError::Invalid(format!(
                        "unknown action {other:?}: start, stop, kill, rebuild-standby or scale"
                    )));
                }
            };
            print(&meridian_lab::region(&dir, &name, &action)?)
        }
        Cmd::Down { dir } => meridian_lab::down(&dir),
        Cmd::Daemon { dir } => meridian_lab::daemon_main(&dir),
    }
}
