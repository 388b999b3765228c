//! Inputs as given on the command line (`--input NAME=VALUE`) or in a file (`--inputs-file`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as Json;

use crate::RunnerError;

/// `NAME=VALUE` pairs into a map.
pub fn parse_pairs(items: &[String]) -> Result<BTreeMap<String, String>, RunnerError> {
    let mut out = BTreeMap::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            return Err(RunnerError::Invalid(format!(
                "--input `{item}` is not NAME=VALUE"
            )));
        };
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

/// A map of inputs from a JSON or YAML file, as the strings `--input` would give.
pub fn from_file(path: &Path) -> Result<BTreeMap<String, String>, RunnerError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunnerError::Invalid(format!("--inputs-file {}: {e}", path.display())))?;
    let map: BTreeMap<String, Json> = serde_yaml_ng::from_str(&text).map_err(|e| {
        RunnerError::Invalid(format!(
            "--inputs-file {}: {e} (expected a map of input names to values)",
            path.display()
        ))
    })?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                Json::String(s) => s,
                other => other.to_string(),
            };
            (k, s)
        })
        .collect())
}
