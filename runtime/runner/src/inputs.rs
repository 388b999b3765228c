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
    let source = crate::files::read_capped(path, "--inputs-file", crate::files::INPUTS_LIMIT)?;
    let map: BTreeMap<String, Json> = serde_yaml_ng::from_str(&source).map_err(|e| {
        RunnerError::Invalid(format!(
            "--inputs-file {}: {e} (expected a map of input names to values)",
            path.display()
        ))
    })?;
    // `name: null` (or `name:` in YAML) gives nothing: the input's default applies, and a
    // required input is missing, not the text "null".
    Ok(map
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k, text(v)))
        .collect())
}

/// [`from_file`] for one workflow: only the inputs it declares. One file (the lab's
/// `inputs.json`) usually serves several workflows, so the others' names are not errors here;
/// names given one by one (`--input`, a request, a schedule entry) are checked strictly.
pub fn from_file_for(
    wf: &meridian_model::Workflow,
    path: &Path,
) -> Result<BTreeMap<String, String>, RunnerError> {
    Ok(from_file(path)?
        .into_iter()
        .filter(|(k, _)| wf.inputs.contains_key(k))
        .collect())
}

/// An input value as the text `--input NAME=VALUE` would give: a string as it is, anything
/// else as JSON.
pub fn text(v: Json) -> String {
    match v {
        Json::String(s) => s,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inputs_file_is_read_with_a_cap() {
        let e = from_file(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.starts_with("--inputs-file /dev/zero: "), "{e}");
        assert!(e.contains("the limit is 1 MiB"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("inputs.json");
        std::fs::write(&p, r#"{"who": "Ada", "n": 3, "none": null}"#).unwrap();
        let m = from_file(&p).unwrap();
        assert_eq!((m["who"].as_str(), m["n"].as_str()), ("Ada", "3"));
        assert!(!m.contains_key("none"), "a null is no value: {m:?}");
    }
}
