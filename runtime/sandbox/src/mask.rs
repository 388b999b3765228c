//! Secret masking: every string that leaves a guest passes through [`Masker`].

use std::borrow::Cow;

/// The replacement for a secret value.
pub(crate) const MASK: &str = "***";

/// Replaces secret values by `***`. Longest values first, so a secret that contains another is
/// masked whole.
#[derive(Debug, Default, Clone)]
pub(crate) struct Masker {
    values: Vec<String>,
}

impl Masker {
    /// A masker for `values`; empty values are ignored (they would match everywhere).
    pub(crate) fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Self { values }
    }

    /// `s` with every secret value replaced.
    pub(crate) fn mask<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(s);
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), MASK));
            }
        }
        out
    }

    /// Owned convenience.
    pub(crate) fn mask_string(&self, s: String) -> String {
        match self.mask(&s) {
            Cow::Borrowed(_) => s,
            Cow::Owned(m) => m,
        }
    }

    /// Masks every string (keys included) inside a JSON value. Works on the parsed value, so
    /// secrets that JSON escaping would have split (quotes, backslashes, non-ASCII) are caught.
    pub(crate) fn mask_json(&self, v: &mut serde_json::Value) {
        if self.values.is_empty() {
            return;
        }
        match v {
            serde_json::Value::String(s) => {
                if let Cow::Owned(m) = self.mask(s) {
                    *s = m;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| self.mask_json(i)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut val) in entries {
                    self.mask_json(&mut val);
                    map.insert(self.mask_string(k), val);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first_and_in_json() {
        let m = Masker::new(["abc", "abcdef", "", "q\"uote"]);
        assert_eq!(m.mask("x abcdef y abc"), "x *** y ***");
        assert!(matches!(m.mask("nothing"), Cow::Borrowed(_)));
        let mut v = serde_json::json!({"k": ["abcdef", {"abc": "q\"uote!"}], "n": 1});
        m.mask_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"k": ["***", {"***": "***!"}], "n": 1})
        );
        assert!(Masker::new([""]).values.is_empty());
    }
}
