//! Parsing and validation of a safetensors header (the JSON after the 8-byte length).
//!
//! Stricter than a plain JSON parse: a key that appears twice (a tensor name, `__metadata__`,
//! or a key inside `__metadata__`) is rejected instead of silently keeping the last one, every
//! entry needs a known dtype and a shape whose byte size matches its offsets, and the byte
//! ranges must tile the data section exactly (no gap, overlap or trailing bytes).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::reader::{Dtype, TensorInfo};

/// A header error: `(field, reason)`.
pub(crate) type FieldError = (String, String);

fn err(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    (field.into(), reason.into())
}

/// The top-level entries of a header in file order, `__metadata__` kept as its own entries.
struct Entries {
    tensors: Vec<(String, Value)>,
    metadata: Vec<Vec<(String, Value)>>,
}

/// The entries of one JSON object, duplicates kept.
struct Pairs(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Pairs, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = m.next_entry::<String, Value>()? {
                    out.push(kv);
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries, A::Error> {
                let mut out = Entries {
                    tensors: Vec::new(),
                    metadata: Vec::new(),
                };
                while let Some(k) = m.next_key::<String>()? {
                    if k == "__metadata__" {
                        out.metadata.push(m.next_value::<Pairs>()?.0);
                    } else {
                        out.tensors.push((k, m.next_value::<Value>()?));
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses and validates a header for a data section of `data_len` bytes: the tensors sorted
/// by offset and the `__metadata__` entries.
///
/// # Errors
///
/// The field at fault and the reason, for anything malformed.
pub(crate) fn parse_header(
    header: &[u8],
    data_len: u64,
) -> Result<(Vec<TensorInfo>, BTreeMap<String, String>), FieldError> {
    let text = std::str::from_utf8(header).map_err(|e| err("header", format!("not UTF-8: {e}")))?;
    let entries: Entries = serde_json::from_str(text.trim_end_matches(' '))
        .map_err(|e| err("header", format!("not a JSON object of tensors: {e}")))?;
    if entries.metadata.len() > 1 {
        return Err(err("__metadata__", "appears twice in the header"));
    }
    let mut metadata = BTreeMap::new();
    for (k, v) in entries.metadata.into_iter().flatten() {
        let Value::String(s) = v else {
            return Err(err(format!("__metadata__.{k}"), "value is not a string"));
        };
        if metadata.insert(k.clone(), s).is_some() {
            return Err(err(format!("__metadata__.{k}"), "key appears twice"));
        }
    }
    let mut seen = HashSet::new();
    let mut tensors = Vec::with_capacity(entries.tensors.len());
    for (name, entry) in &entries.tensors {
        if !seen.insert(name.as_str()) {
            return Err(err(
                format!("tensor `{name}`"),
                "the tensor name appears twice in the header",
            ));
        }
        tensors.push(parse_entry(name, entry)?);
    }
    tensors.sort_by_key(|t| (t.begin, t.end));
    let mut cursor = 0u64;
    for t in &tensors {
        if t.begin != cursor {
            return Err(err(
                format!("tensor `{}`.data_offsets", t.name),
                format!(
                    "starts at byte {} but the previous tensor ends at {cursor} (gap or overlap)",
                    t.begin
                ),
            ));
        }
        cursor = t.end;
    }
    if cursor != data_len {
        return Err(err(
            "data_offsets",
            format!(
                "tensors cover {cursor} bytes but the data section has {data_len} (truncated or padded file)"
            ),
        ));
    }
    Ok((tensors, metadata))
}

fn parse_entry(name: &str, entry: &Value) -> Result<TensorInfo, FieldError> {
    let field = |f: &str| format!("tensor `{name}`.{f}");
    let dtype_name = entry
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| err(field("dtype"), "missing or not a string"))?;
    let dtype = Dtype::parse(dtype_name)
        .ok_or_else(|| err(field("dtype"), format!("unknown dtype `{dtype_name}`")))?;
    let shape: Vec<usize> = entry
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| err(field("shape"), "missing or not an array"))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| err(field("shape"), "entries must be non-negative integers"))?;
    let offs = entry
        .get("data_offsets")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
        .ok_or_else(|| err(field("data_offsets"), "must be two non-negative integers"))?;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(field("shape"), format!("{shape:?} overflows")))?;
    let nbytes = numel
        .checked_mul(dtype.size())
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| err(field("shape"), format!("byte size of {shape:?} overflows")))?;
    if offs.1 < offs.0 || offs.1 - offs.0 != nbytes {
        return Err(err(
            field("data_offsets"),
            format!(
                "{:?} hold {} bytes but shape {shape:?} of {} needs {nbytes}",
                offs,
                offs.1.saturating_sub(offs.0),
                dtype.name()
            ),
        ));
    }
    Ok(TensorInfo {
        name: name.to_string(),
        dtype,
        shape,
        begin: offs.0,
        end: offs.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_a_consistent_header() {
        let h =
            br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}"#;
        let (t, m) = parse_header(h, 8).unwrap();
        assert_eq!(t[0].numel(), 2);
        assert_eq!(m["k"], "v");
    }

    #[test]
    fn rejects_lying_offsets_and_sizes() {
        let bad = [
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            r#"{"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
            r#"[1,2]"#,
            r#"{"a":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,8]}}"#,
        ];
        for b in bad {
            assert!(parse_header(b.as_bytes(), 8).is_err(), "{b}");
        }
        let ok = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert!(
            parse_header(ok.as_bytes(), 12).is_err(),
            "data section larger than tensors"
        );
    }

    #[test]
    fn duplicate_keys_are_rejected_with_a_clear_field() {
        let dup_meta = br#"{"__metadata__":{"a":"1"},"__metadata__":{"b":"2"},"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#;
        let (field, _) = parse_header(dup_meta, 1).unwrap_err();
        assert_eq!(field, "__metadata__");
        let dup_key = br#"{"__metadata__":{"a":"1","a":"2"}}"#;
        assert_eq!(parse_header(dup_key, 0).unwrap_err().0, "__metadata__.a");
        let dup_tensor = br#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
        let (field, reason) = parse_header(dup_tensor, 2).unwrap_err();
        assert_eq!(field, "tensor `x`");
        assert!(reason.contains("appears twice"), "{reason}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Lying headers never panic, never allocate from a claimed size, and whatever is
        /// accepted is consistent with the data section.
        #[test]
        fn random_headers_never_panic(
            dtype in prop::sample::select(vec!["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "Q4", ""]),
            shape in proptest::collection::vec(prop_oneof![0u64..5, Just(u64::MAX), Just(1u64 << 62)], 0..4),
            begin in prop_oneof![0u64..40, Just(u64::MAX)],
            len in prop_oneof![0u64..40, Just(u64::MAX)],
            data_len in 0u64..64,
            dup in any::<bool>(),
        ) {
            let end = begin.wrapping_add(len);
            let entry = format!(r#"{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{begin},{end}]}}"#);
            let h = if dup {
                format!(r#"{{"t":{entry},"t":{entry}}}"#)
            } else {
                format!(r#"{{"t":{entry}}}"#)
            };
            match parse_header(h.as_bytes(), data_len) {
                Ok((ts, _)) => {
                    prop_assert!(!dup);
                    for t in ts {
                        prop_assert!(t.end <= data_len);
                        prop_assert_eq!(t.nbytes() as usize, t.numel() * t.dtype.size());
                    }
                }
                Err((field, reason)) => {
                    prop_assert!(!field.is_empty() && !reason.is_empty());
                }
            }
        }

        /// Arbitrary bytes as a header: an error naming a field, or a consistent parse.
        #[test]
        fn arbitrary_header_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Err((field, _)) = parse_header(&bytes, 16) {
                prop_assert!(!field.is_empty());
            }
        }
    }
}
