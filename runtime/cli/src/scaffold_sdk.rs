//! The Rust guest SDK, carried inside the `meridian` binary: `meridian new step` writes it into
//! the new step's `vendor/` directory, so a scaffold builds from an installed binary, far from
//! any Meridian checkout, with the SDK of exactly the contract that binary speaks.
//!
//! The SDK's own manifest inherits from the guest workspace; the vendored one gets the same
//! dependency versions written out.

/// `(path under vendor/, text)` of every SDK file, and the contract it is generated from.
const FILES: &[(&str, &str)] = &[
    ("wit/step.wit", include_str!("../../../sdk/wit/step.wit")),
    (
        "meridian-sdk/src/lib.rs",
        include_str!("../../../sdk/rust/src/lib.rs"),
    ),
    (
        "meridian-sdk/src/bindings.rs",
        include_str!("../../../sdk/rust/src/bindings.rs"),
    ),
    (
        "meridian-sdk/src/ctx.rs",
        include_str!("../../../sdk/rust/src/ctx.rs"),
    ),
    (
        "meridian-sdk/src/error.rs",
        include_str!("../../../sdk/rust/src/error.rs"),
    ),
    (
        "meridian-sdk/src/export.rs",
        include_str!("../../../sdk/rust/src/export.rs"),
    ),
    (
        "meridian-sdk/src/host.rs",
        include_str!("../../../sdk/rust/src/host.rs"),
    ),
    (
        "meridian-sdk/src/http.rs",
        include_str!("../../../sdk/rust/src/http.rs"),
    ),
    (
        "meridian-sdk/src/http/url.rs",
        include_str!("../../../sdk/rust/src/http/url.rs"),
    ),
    (
        "meridian-sdk/src/manifest.rs",
        include_str!("../../../sdk/rust/src/manifest.rs"),
    ),
    (
        "meridian-sdk/src/sql.rs",
        include_str!("../../../sdk/rust/src/sql.rs"),
    ),
    (
        "meridian-sdk/src/testing.rs",
        include_str!("../../../sdk/rust/src/testing.rs"),
    ),
];

/// The SDK's manifest and the guest workspace's, for the versions it inherits.
const SDK_MANIFEST: &str = include_str!("../../../sdk/rust/Cargo.toml");
const GUEST_WORKSPACE: &str = include_str!("../../../steps/Cargo.toml");

/// The vendored SDK: `(path under vendor/, text)`, its manifest included.
pub(crate) fn files() -> anyhow::Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = FILES
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    out.push(("meridian-sdk/Cargo.toml".into(), manifest()?));
    Ok(out)
}

/// The SDK's manifest with every `x.workspace = true` replaced by the guest workspace's entry
/// for `x`, and no workspace or lints of its own (the step's workspace takes it in).
fn manifest() -> anyhow::Result<String> {
    let ws: toml::Table = toml::from_str(GUEST_WORKSPACE)?;
    let deps = ws
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(|d| d.as_table())
        .ok_or_else(|| anyhow::anyhow!("steps/Cargo.toml has no [workspace.dependencies]"))?;
    let mut sdk: toml::Table = toml::from_str(SDK_MANIFEST)?;
    if let Some(pkg) = sdk.get_mut("package").and_then(|p| p.as_table_mut()) {
        pkg.remove("workspace");
    }
    sdk.remove("lints");
    if let Some(own) = sdk.get_mut("dependencies").and_then(|d| d.as_table_mut()) {
        for (name, spec) in own.iter_mut() {
            let inherited = spec
                .as_table()
                .and_then(|t| t.get("workspace"))
                .and_then(|w| w.as_bool())
                == Some(true);
            if inherited {
                *spec = deps
                    .get(name)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("no workspace version for `{name}`"))?;
            }
        }
    }
    Ok(format!(
        "# The Meridian step SDK as `meridian {}` carries it (vendored by `meridian new step`).\n{}",
        env!("CARGO_PKG_VERSION"),
        toml::to_string(&sdk)?
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn every_sdk_file_is_carried() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk");
        let mut on_disk = Vec::new();
        let mut walk = vec![root.join("rust/src"), root.join("wit")];
        while let Some(dir) = walk.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk.push(p);
                } else {
                    let rel = p
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    on_disk.push(rel.replacen("rust/", "meridian-sdk/", 1));
                }
            }
        }
        on_disk.sort();
        let mut carried: Vec<String> = super::FILES.iter().map(|(p, _)| p.to_string()).collect();
        carried.sort();
        assert_eq!(
            carried, on_disk,
            "add the new SDK file to scaffold_sdk::FILES"
        );
    }

    #[test]
    fn the_manifest_stands_alone() {
        let m = super::manifest().unwrap();
        assert!(!m.contains("workspace"), "{m}");
        let t: toml::Table = toml::from_str(&m).unwrap();
        let deps = t["dependencies"].as_table().unwrap();
        assert!(deps["wit-bindgen"].as_str().is_some(), "{m}");
        assert_eq!(deps["thiserror"].as_str(), Some("2"));
        assert_eq!(t["package"]["name"].as_str(), Some("meridian-sdk"));
    }
}
