//! A JSON document with a key twice in one object reads differently to different readers:
//! `serde_json` (and the verifier) keep the last value, a person or another tool may see the
//! first. Signed documents refuse it ([`no_duplicate_keys`]).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Errors on the first object that holds a key twice, naming the key and where it is.
pub(crate) fn no_duplicate_keys(text: &str) -> Result<(), String> {
    serde_json::from_str::<Checked>(text)
        .map(|_| ())
        .map_err(|e| format!("{e}"))
}

/// Any JSON value, walked for duplicate keys and then dropped.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Walk)
    }
}

struct Walk;

impl<'de> Visitor<'de> for Walk {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_none<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Checked, D::Error> {
        Checked::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!(
                    "the key `{}` appears twice in one object",
                    meridian_protocol::text::for_terminal(&key, "")
                )));
            }
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::no_duplicate_keys;

    #[test]
    fn a_key_twice_in_one_object_is_named_with_its_place() {
        assert_eq!(
            no_duplicate_keys(r#"{"a": [1, {"b": null}], "c": {"a": 2}}"#),
            Ok(())
        );
        let e =
            no_duplicate_keys("{\"fig\": {\"achieved\": 99,\n \"achieved\": 160}}").unwrap_err();
        assert!(
            e.contains("`achieved` appears twice") && e.contains("line 2"),
            "{e}"
        );
        assert!(no_duplicate_keys("[{\"x\": 1, \"x\": 1}]").is_err());
    }
}
