//! Secret values: `MERIDIAN_SECRET_<NAME>` from the environment, or `NAME=value` lines of a
//! secrets file. Never journaled; every value is masked wherever it would be shown.

use std::collections::BTreeMap;
use std::path::Path;

use meridian_model::Workflow;

use crate::RunnerError;

/// The environment variable that gives secret `name`.
pub fn env_name(name: &str) -> String {
    format!("MERIDIAN_SECRET_{}", name.to_uppercase().replace('-', "_"))
}

/// The values of the workflow's declared secrets; the environment wins over the file. A
/// declared secret with no value is an error naming both ways to give it.
pub fn load(wf: &Workflow, file: Option<&Path>) -> Result<BTreeMap<String, String>, RunnerError> {
    let mut from_file = BTreeMap::new();
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| RunnerError::Invalid(format!("secrets file {}: {e}", f.display())))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(RunnerError::Invalid(format!(
                    "{}:{}: expected NAME=value",
                    f.display(),
                    n + 1
                )));
            };
            from_file.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for s in &wf.secrets {
        let env = env_name(&s.value);
        match std::env::var(&env)
            .ok()
            .or_else(|| from_file.get(&s.value).cloned())
        {
            Some(v) => {
                out.insert(s.value.clone(), v);
            }
            None => missing.push(format!(
                "secret `{}` has no value: export {env}=… or put `{}=…` in --secrets-file",
                s.value, s.value
            )),
        }
    }
    if !missing.is_empty() {
        return Err(RunnerError::Invalid(missing.join("\nerror: ")));
    }
    Ok(out)
}
