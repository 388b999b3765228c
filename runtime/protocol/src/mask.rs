//! Secret masking: the one masker for everything a step produces and everything the engine
//! prints or stores.

use std::borrow::Cow;

use serde_json::Value as Json;

/// The replacement for a secret value.
pub const MASK: &str = "***";

/// Replaces secret values by `***`. Longest values first, so a secret that contains another is
/// masked whole. Cost: one substring search per secret value per string.
#[derive(Debug, Default, Clone)]
pub struct Masker {
    values: Vec<String>,
}

impl Masker {
    /// A masker for `values`; empty values are ignored (they would match everywhere).
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| !v.as_ref().is_empty())
            .map(|v| v.as_ref().to_owned())
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Self { values }
    }

    /// The secret values, longest first.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// `s` with every secret value replaced; borrowed when nothing matched.
    pub fn mask<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(s);
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), MASK));
            }
        }
        out
    }

    /// Owned form of [`Masker::mask`].
    pub fn mask_str(&self, s: &str) -> String {
        self.mask(s).into_owned()
    }

    /// Masks an owned string without copying it when nothing matches.
    pub fn mask_string(&self, s: String) -> String {
        match self.mask(&s) {
            Cow::Borrowed(_) => s,
            Cow::Owned(m) => m,
        }
    }

    /// Masks bytes: a secret's UTF-8 bytes are replaced wherever they occur, text or not.
    pub fn mask_bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        let mut out = bytes;
        for v in &self.values {
            let needle = v.as_bytes();
            if !out.windows(needle.len()).any(|w| w == needle) {
                continue;
            }
            let mut masked = Vec::with_capacity(out.len());
            let mut i = 0;
            while i < out.len() {
                if out[i..].starts_with(needle) {
                    masked.extend_from_slice(MASK.as_bytes());
                    i += needle.len();
                } else {
                    masked.push(out[i]);
                    i += 1;
                }
            }
            out = masked;
        }
        out
    }

    /// Masks every string (keys included) inside a JSON value, in place. Works on the parsed
    /// value, so secrets that JSON escaping would have split (quotes, backslashes, non-ASCII)
    /// are caught.
    pub fn mask_json_mut(&self, v: &mut Json) {
        if self.values.is_empty() {
            return;
        }
        match v {
            Json::String(s) => {
                if let Cow::Owned(m) = self.mask(s) {
                    *s = m;
                }
            }
            Json::Array(items) => items.iter_mut().for_each(|i| self.mask_json_mut(i)),
            Json::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut val) in entries {
                    self.mask_json_mut(&mut val);
                    map.insert(self.mask_string(k), val);
                }
            }
            _ => {}
        }
    }

    /// A masked copy of a JSON value.
    pub fn mask_json(&self, v: &Json) -> Json {
        let mut out = v.clone();
        self.mask_json_mut(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_bytes_text_or_not() {
        let m = Masker::new(["hunter2", "hunter"]);
        assert_eq!(m.mask_bytes(b"a hunter2 b hunter".to_vec()), b"a *** b ***");
        assert_eq!(
            m.mask_bytes(vec![0xff, b'h', b'u', b'n', b't', b'e', b'r', b'2', 0x00]),
            [0xff, b'*', b'*', b'*', 0x00]
        );
        assert_eq!(m.mask_bytes(b"nothing".to_vec()), b"nothing");
    }

    #[test]
    fn masks_longest_first_and_in_json() {
        let m = Masker::new(["abc", "abcdef", "", "q\"uote"]);
        assert_eq!(m.mask("x abcdef y abc"), "x *** y ***");
        assert!(matches!(m.mask("nothing"), Cow::Borrowed(_)));
        let v = serde_json::json!({"k": ["abcdef", {"abc": "q\"uote!"}], "n": 1});
        assert_eq!(
            m.mask_json(&v),
            serde_json::json!({"k": ["***", {"***": "***!"}], "n": 1})
        );
        assert!(Masker::new([""]).values().is_empty());
    }
}
