//! Secret masking for everything the engine prints or stores.

use serde_json::Value as Json;

/// Replaces every occurrence of a secret value with `***`. Longer secrets are replaced first so a
/// secret that contains another is masked whole.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    values: Vec<String>,
}

impl Masker {
    pub fn new<I: IntoIterator<Item = String>>(values: I) -> Self {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Masker { values }
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    pub fn mask_str(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "***");
            }
        }
        out
    }

    /// Masks every string (and object key) inside a JSON value.
    pub fn mask_json(&self, v: &Json) -> Json {
        if self.values.is_empty() {
            return v.clone();
        }
        match v {
            Json::String(s) => Json::String(self.mask_str(s)),
            Json::Array(a) => Json::Array(a.iter().map(|x| self.mask_json(x)).collect()),
            Json::Object(o) => Json::Object(
                o.iter()
                    .map(|(k, x)| (self.mask_str(k), self.mask_json(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_nested_and_longest_first() {
        let m = Masker::new(["abc".to_string(), "abcdef".to_string(), String::new()]);
        let v = serde_json::json!({"k": ["xx abcdef yy", {"abc": 1}], "n": 3});
        assert_eq!(
            m.mask_json(&v),
            serde_json::json!({"k": ["xx *** yy", {"***": 1}], "n": 3})
        );
    }
}
