//! `meridian step push|pull|sign|keygen`, and where a step comes from (`steps show`).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use meridian_engine::ComponentRef;
use meridian_host::{OciSettings, WasmExecutor};
use meridian_oci::OciRef;
use serde_json::json;
use sha2::Digest as _;

use crate::commands::Ctx;
use crate::out::{errln, outln};
use crate::{Exit, exit};

#[derive(Subcommand, Debug)]
pub enum StepCmd {
    /// Push a step component to a registry as a Wasm OCI artifact (one `application/wasm`
    /// layer); prints the pinned reference to write in `uses:`.
    Push {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Where: `oci://HOST/NAMESPACE/NAME:TAG`.
        reference: String,
    },
    /// Pull a step into the cache, checking digests and the trust policy; prints the pinned
    /// reference. Afterwards the pinned reference runs offline.
    Pull {
        /// `oci://HOST/NAMESPACE/NAME:TAG[@sha256:…]`.
        reference: String,
        /// Also write the component to this file.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Sign a pushed step's manifest digest with an ed25519 key and publish the signature next
    /// to it in the registry (tag `sha256-<hex>.sig`).
    Sign {
        /// `oci://HOST/NAMESPACE/NAME:TAG[@sha256:…]` (a tag is resolved to its digest first).
        reference: String,
        /// The private key (PKCS#8 PEM, from `meridian step keygen` or `openssl genpkey -algorithm ed25519`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Make an ed25519 key pair: FILE (private, mode 0600) and FILE.pub (for trust policies).
    Keygen {
        /// The private key file to create (never overwritten).
        file: PathBuf,
    },
}

/// The executor's OCI settings from the command line.
pub fn settings(ctx: &Ctx) -> anyhow::Result<OciSettings> {
    let policy = match &ctx.trust_policy {
        Some(p) => Some(Arc::new(
            meridian_oci::policy::TrustPolicy::load(p)
                .map_err(|e| Exit::invalid(format!("error: {e}")))?,
        )),
        None => None,
    };
    Ok(OciSettings {
        cache_dir: ctx.cache_dir.clone(),
        policy,
        allow_unpinned: ctx.allow_unpinned,
    })
}

fn oci_ref(text: &str) -> anyhow::Result<OciRef> {
    OciRef::parse(text).map_err(|e| Exit::invalid(format!("error: {e}")))
}

fn failed(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: exit::FAILED,
        message: format!("error: {e}"),
    })
}

pub async fn run(ctx: &Ctx, cmd: StepCmd) -> anyhow::Result<u8> {
    match cmd {
        StepCmd::Push { file, reference } => {
            let target = oci_ref(&reference)?;
            let bytes = std::fs::read(&file)
                .map_err(|e| Exit::invalid(format!("error: {}: {e}", file.display())))?;
            let pushed = meridian_oci::push(&bytes, &target).await.map_err(failed)?;
            if ctx.json {
                outln!(
                    "{}",
                    json!({"reference": pushed.reference.to_string(), "manifest_digest": pushed.manifest_digest,
                           "component_digest": pushed.component_digest, "size": pushed.size})
                )?;
            } else {
                errln!(
                    "pushed {} ({} bytes, component {})",
                    file.display(),
                    pushed.size,
                    pushed.component_digest
                );
                outln!("{}", pushed.reference)?;
            }
            Ok(exit::OK)
        }
        StepCmd::Pull { reference, output } => {
            let exec = ctx.executor()?;
            let r = oci_ref(&reference)?;
            let uses = ComponentRef::parse(&r.to_string(), std::path::Path::new("/"))
                .map_err(|e| Exit::invalid(format!("error: {e}")))?;
            let f = exec.fetch_oci(&uses).await.map_err(failed)?;
            if let Some(out) = &output {
                std::fs::write(out, &f.component)
                    .map_err(|e| failed(format!("{}: {e}", out.display())))?;
            }
            let origin = Origin::from_fetched(&f, exec.has_policy());
            if ctx.json {
                outln!("{}", origin.to_json())?;
            } else {
                errln!(
                    "{} ({} bytes{}); signature: {}",
                    if f.from_cache { "cached" } else { "pulled" },
                    f.component.len(),
                    output
                        .as_ref()
                        .map(|o| format!(", written to {}", o.display()))
                        .unwrap_or_default(),
                    origin.signature
                );
                outln!("{}", f.reference)?;
            }
            Ok(exit::OK)
        }
        StepCmd::Sign { reference, key } => {
            let mut r = oci_ref(&reference)?;
            let sk = meridian_oci::sign::load_signing_key(&key)
                .map_err(|e| Exit::invalid(format!("error: {e}")))?;
            if r.digest.is_none() {
                let d = meridian_oci::resolve_tag(&r).await.map_err(failed)?;
                r = r.pinned(&d);
            }
            let id = meridian_oci::sign_and_publish(&r, &sk)
                .await
                .map_err(failed)?;
            errln!("signed with {id}");
            outln!("{r}")?;
            Ok(exit::OK)
        }
        StepCmd::Keygen { file } => {
            let (pub_path, vk) = meridian_oci::sign::generate(&file)
                .map_err(|e| Exit::invalid(format!("error: {e}")))?;
            errln!(
                "wrote {} (private, keep it secret) and {} ({})",
                file.display(),
                pub_path.display(),
                meridian_oci::sign::key_id(&vk)
            );
            outln!("{}", pub_path.display())?;
            Ok(exit::OK)
        }
    }
}

/// Where a step comes from, its digest and whether a signature vouches for it.
pub struct Origin {
    kind: &'static str,
    reference: String,
    digest: Option<String>,
    component_digest: Option<String>,
    signature: String,
}

impl Origin {
    fn from_fetched(f: &meridian_oci::Fetched, has_policy: bool) -> Self {
        let signature = match (&f.signed_by, &f.rule) {
            (Some(by), Some(rule)) => format!("verified, signed by {by} ({rule})"),
            (None, Some(rule)) => format!("not required ({rule})"),
            _ if has_policy => "not required (no rule of the trust policy covers it)".into(),
            _ => "not checked (no trust policy: --trust-policy)".into(),
        };
        Origin {
            kind: "oci",
            reference: f.reference.to_string(),
            digest: Some(f.manifest_digest.clone()),
            component_digest: Some(f.component_digest.clone()),
            signature,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({"kind": self.kind, "reference": self.reference, "digest": self.digest,
               "component_digest": self.component_digest, "signature": self.signature})
    }

    pub fn to_text(&self) -> String {
        let mut s = format!("\norigin:     {} {}\n", self.kind, self.reference);
        if let Some(d) = &self.digest {
            s += &format!("digest:     {d}\n");
        }
        if let Some(d) = self
            .component_digest
            .as_ref()
            .filter(|c| Some(*c) != self.digest.as_ref())
        {
            s += &format!("component:  {d}\n");
        }
        s += &format!("signature:  {}\n", self.signature);
        s
    }
}

/// The origin of a step `steps show` described.
pub async fn origin(exec: &WasmExecutor, c: &ComponentRef) -> Origin {
    let digest = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
    match c {
        ComponentRef::Builtin { name, .. } => Origin {
            kind: "built-in",
            reference: name.clone(),
            digest: meridian_artifacts::builtin(name).map(digest),
            component_digest: None,
            signature: "built into this meridian binary".into(),
        },
        ComponentRef::Path { path, .. } => Origin {
            kind: "path",
            reference: path.display().to_string(),
            digest: std::fs::read(path).ok().map(|b| digest(&b)),
            component_digest: None,
            signature: "none (a local file: pin it with @sha256:…)".into(),
        },
        ComponentRef::Oci { .. } => match exec.fetch_oci(c).await {
            Ok(f) => Origin::from_fetched(&f, exec.has_policy()),
            Err(e) => Origin {
                kind: "oci",
                reference: c.to_string(),
                digest: None,
                component_digest: None,
                signature: format!("unknown: {e}"),
            },
        },
    }
}
