//! A synthetic JSON value that validates against a JSON schema: what a model under vLLM's
//! JSON grammar (`structured_outputs.json`, `response_format` `json_schema`, forced tool calls)
//! produces, with readable made-up values.
//!
//! Covered: `type` (one or a list), objects (every `required` property, each optional one
//! with probability 1/2, `minProperties`/`maxProperties`, `additionalProperties` schemas),
//! arrays (`items`, `prefixItems`, `minItems`/`maxItems`, `uniqueItems`), `enum`, `const`,
//! strings (`minLength`/`maxLength`, `pattern`, the formats xgrammar knows), numbers and
//! integers (`minimum`, `maximum`, their exclusive forms, `multipleOf`), booleans, `null`,
//! `anyOf`/`oneOf` (the first branch), `allOf` (merged) and `$ref` to `#/$defs/…` or
//! `#/definitions/…` (pydantic's form) or any JSON pointer into the root schema.

use super::regex_gen;
use super::rng::DocRng;
use serde_json::{Map, Number, Value};
use thiserror::Error;

/// Nesting beyond which optional properties and array items are left out, so that recursive
/// schemas (a tree node whose children are tree nodes) end.
const SHALLOW_DEPTH: usize = 6;

/// Nesting at which a schema is refused: its required parts recurse without end.
const MAX_DEPTH: usize = 64;

/// Items an array gets when the schema does not bound it: 1 to this many.
const DEFAULT_MAX_ITEMS: u64 = 3;

/// Tries at a fresh item before an array with `uniqueItems` stops growing.
const UNIQUE_TRIES: usize = 8;

/// The schema `true`: any value.
static ANY: Value = Value::Bool(true);

/// Readable words for made-up strings and property names.
const WORDS: &[&str] = &[
    "alpha", "amber", "anchor", "apple", "arrow", "autumn", "basket", "beacon", "birch", "blue",
    "bridge", "canyon", "cedar", "cloud", "copper", "coral", "delta", "desert", "ember", "falcon",
    "forest", "garden", "glacier", "harbor", "island", "jade", "lantern", "lemon", "maple",
    "meadow", "mountain", "north", "ocean", "orchid", "pepper", "pine", "planet", "quartz",
    "river", "saffron", "silver", "spring", "stone", "summer", "sunset", "thunder", "tiger",
    "valley", "velvet", "willow", "winter", "yellow",
];

/// Why no document can be made for a schema.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("Unresolvable JSON schema reference: {0}")]
    UnresolvedRef(String),
    #[error("The JSON schema nests deeper than {MAX_DEPTH} levels in its required parts")]
    TooDeep,
    #[error("The JSON schema cannot be satisfied: {0}")]
    Unsatisfiable(String),
    #[error("Invalid JSON schema: {0}")]
    Invalid(String),
    #[error("{0}")]
    Pattern(String),
}

/// A value valid against `schema`, whose `$ref`s resolve against `schema` itself.
pub fn generate(schema: &Value, rng: &mut DocRng) -> Result<Value, SchemaError> {
    Gen { root: schema, rng }.value(schema, 0)
}

/// Any JSON object (`json_object`): one to three properties with string or integer values.
pub fn free_object(rng: &mut DocRng) -> Value {
    let mut m = Map::new();
    for _ in 0..rng.between(1, 3) {
        let key = (*rng.pick(WORDS)).to_string();
        let v = if rng.chance(0.5) {
            Value::String(words(rng, 1, 3))
        } else {
            Value::from(rng.between(0, 100))
        };
        m.insert(key, v);
    }
    Value::Object(m)
}

/// `lo..=hi` words joined by spaces.
fn words(rng: &mut DocRng, lo: u64, hi: u64) -> String {
    let n = rng.between(lo, hi);
    (0..n)
        .map(|_| *rng.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

struct Gen<'a, 'r> {
    root: &'a Value,
    rng: &'r mut DocRng,
}

impl<'a> Gen<'a, '_> {
    fn value(&mut self, schema: &Value, depth: usize) -> Result<Value, SchemaError> {
        if depth > MAX_DEPTH {
            return Err(SchemaError::TooDeep);
        }
        let s = match schema {
            Value::Bool(true) => return Ok(Value::String(words(self.rng, 1, 2))),
            Value::Bool(false) => {
                return Err(SchemaError::Unsatisfiable(
                    "the schema `false` admits no value".into(),
                ))
            }
            Value::Object(m) => m,
            other => {
                return Err(SchemaError::Invalid(format!(
                    "a schema must be an object or a boolean, not {other}"
                )))
            }
        };
        if let Some(r) = s.get("$ref") {
            let target = self.resolve(r)?;
            return self.value(target, depth + 1);
        }
        if let Some(c) = s.get("const") {
            return Ok(c.clone());
        }
        if let Some(e) = s.get("enum") {
            let options = e
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| SchemaError::Invalid("`enum` must be a non-empty array".into()))?;
            return Ok(self.rng.pick(options).clone());
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = s.get(key) {
                let first = branches
                    .as_array()
                    .and_then(|a| a.first())
                    .ok_or_else(|| SchemaError::Invalid(format!("`{key}` must be non-empty")))?;
                // Keywords beside the branches (pydantic puts `description`, `default`, and
                // sometimes `type`) apply too: merge them into the branch.
                let merged = self.merge(s, key, std::slice::from_ref(first))?;
                return self.value(&merged, depth + 1);
            }
        }
        if let Some(parts) = s.get("allOf") {
            let parts = parts
                .as_array()
                .ok_or_else(|| SchemaError::Invalid("`allOf` must be an array".into()))?;
            let merged = self.merge(s, "allOf", parts)?;
            return self.value(&merged, depth + 1);
        }
        match type_of(s) {
            "object" => self.object(s, depth),
            "array" => self.array(s, depth),
            "string" => self.string(s),
            "integer" => number(s, true, self.rng).map(Value::Number),
            "number" => number(s, false, self.rng).map(Value::Number),
            "boolean" => Ok(Value::Bool(self.rng.chance(0.5))),
            "null" => Ok(Value::Null),
            other => Err(SchemaError::Invalid(format!("unknown type {other:?}"))),
        }
    }

    /// `s` without `skip`, with each of `parts` (references resolved) merged in: properties
    /// joined, `required` unioned, other keywords taken from the first that has them.
    fn merge(
        &mut self,
        s: &Map<String, Value>,
        skip: &str,
        parts: &[Value],
    ) -> Result<Value, SchemaError> {
        let mut out: Map<String, Value> = s
            .iter()
            .filter(|(k, _)| k.as_str() != skip)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for part in parts {
            let mut part = part;
            let mut hops = 0;
            while let Some(r) = part.get("$ref") {
                part = self.resolve(r)?;
                hops += 1;
                if hops > MAX_DEPTH {
                    return Err(SchemaError::TooDeep);
                }
            }
            let Some(pm) = part.as_object() else {
                continue;
            };
            for (k, v) in pm {
                match (k.as_str(), out.get_mut(k)) {
                    ("properties", Some(Value::Object(props))) => {
                        if let Some(more) = v.as_object() {
                            for (pk, pv) in more {
                                props.entry(pk.clone()).or_insert_with(|| pv.clone());
                            }
                        }
                    }
                    ("required", Some(Value::Array(req))) => {
                        for r in v.as_array().into_iter().flatten() {
                            if !req.contains(r) {
                                req.push(r.clone());
                            }
                        }
                    }
                    (_, Some(_)) => {}
                    (_, None) => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        Ok(Value::Object(out))
    }

    /// The schema a `$ref` points at: a JSON pointer into the root (`#/$defs/Name`).
    fn resolve(&self, r: &Value) -> Result<&'a Value, SchemaError> {
        let r = r
            .as_str()
            .ok_or_else(|| SchemaError::Invalid("`$ref` must be a string".into()))?;
        let pointer = r
            .strip_prefix('#')
            .ok_or_else(|| SchemaError::UnresolvedRef(r.to_string()))?;
        if pointer.is_empty() {
            return Ok(self.root);
        }
        self.root
            .pointer(pointer)
            .ok_or_else(|| SchemaError::UnresolvedRef(r.to_string()))
    }

    fn object(&mut self, s: &Map<String, Value>, depth: usize) -> Result<Value, SchemaError> {
        let empty = Map::new();
        let props = s
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let required: Vec<&str> = s
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let min = s.get("minProperties").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = s
            .get("maxProperties")
            .and_then(Value::as_u64)
            .map_or(usize::MAX, |m| m as usize);
        let additional = s.get("additionalProperties");
        // Declared properties, even none, close the object to them; with no `properties`
        // and no `required` it is a free object.
        if !s.contains_key("properties") && required.is_empty() {
            return match additional {
                Some(Value::Bool(false)) => Ok(Value::Object(Map::new())),
                Some(a @ Value::Object(_)) => {
                    let mut m = Map::new();
                    let n = self.rng.between(min.max(1) as u64, (min.max(1) + 1) as u64);
                    let n = (n as usize).min(max);
                    while m.len() < n {
                        let key = format!("{}_{}", self.rng.pick(WORDS), m.len());
                        let v = self.value(a, depth + 1)?;
                        m.insert(key, v);
                    }
                    Ok(Value::Object(m))
                }
                _ if min == 0 && depth >= SHALLOW_DEPTH => Ok(Value::Object(Map::new())),
                _ => {
                    let mut v = free_object(self.rng);
                    if let Value::Object(m) = &mut v {
                        while m.len() < min {
                            m.insert(format!("key_{}", m.len()), Value::from(m.len()));
                        }
                        while m.len() > max {
                            let Some(last) = m.keys().next_back().cloned() else {
                                break;
                            };
                            m.remove(&last);
                        }
                    }
                    Ok(v)
                }
            };
        }
        // Which properties appear: all required ones, each optional one by a coin (none past
        // the shallow depth), then optional ones in order until `minProperties` is met.
        let optional_ok = depth < SHALLOW_DEPTH;
        let mut chosen: Vec<&str> = Vec::new();
        let mut budget = max.saturating_sub(required.len());
        for k in props.keys() {
            if required.contains(&k.as_str()) {
                chosen.push(k);
            } else if optional_ok && budget > 0 && self.rng.chance(0.5) {
                chosen.push(k);
                budget -= 1;
            }
        }
        for k in props.keys() {
            if chosen.len() >= min {
                break;
            }
            if !chosen.contains(&k.as_str()) {
                chosen.push(k);
            }
        }
        let mut m = Map::new();
        for (k, sub) in props {
            if chosen.contains(&k.as_str()) {
                m.insert(k.clone(), self.value(sub, depth + 1)?);
            }
        }
        // Required names with no property schema take `additionalProperties`' schema.
        for r in &required {
            if !m.contains_key(*r) {
                let v = match additional {
                    Some(a @ Value::Object(_)) => self.value(a, depth + 1)?,
                    _ => Value::String(words(self.rng, 1, 2)),
                };
                m.insert((*r).to_string(), v);
            }
        }
        Ok(Value::Object(m))
    }

    fn array(&mut self, s: &Map<String, Value>, depth: usize) -> Result<Value, SchemaError> {
        let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0);
        let max = s.get("maxItems").and_then(Value::as_u64);
        if max.is_some_and(|m| m < min) {
            return Err(SchemaError::Unsatisfiable(format!(
                "minItems {min} exceeds maxItems {}",
                max.unwrap_or(0)
            )));
        }
        let prefix: &[Value] = s
            .get("prefixItems")
            .and_then(Value::as_array)
            .map_or(&[], |a| a.as_slice());
        let items = s.get("items");
        // Past the shallow depth arrays take their minimum, so recursive schemas end.
        let hi = if depth >= SHALLOW_DEPTH {
            min
        } else {
            let open = min.max(1) + DEFAULT_MAX_ITEMS - 1;
            max.map_or(open, |m| m.min(open.max(min)))
        };
        let lo = if depth >= SHALLOW_DEPTH {
            min
        } else {
            min.max(1).min(hi)
        };
        let mut n = self.rng.between(lo, hi) as usize;
        let closed = matches!(items, Some(Value::Bool(false)));
        if closed {
            n = n.min(prefix.len());
        }
        let unique = s.get("uniqueItems").and_then(Value::as_bool) == Some(true);
        let mut out: Vec<Value> = Vec::with_capacity(n);
        let mut i = 0;
        while out.len() < n {
            let sub: &Value = match prefix.get(i) {
                Some(p) => p,
                None => match items {
                    Some(it @ (Value::Object(_) | Value::Bool(true))) => it,
                    Some(Value::Array(tuple)) => match tuple.get(i) {
                        Some(t) => t,
                        None => break,
                    },
                    None => &ANY,
                    _ => break,
                },
            };
            let mut v = self.value(sub, depth + 1)?;
            if unique {
                let mut tries = 0;
                while out.contains(&v) && tries < UNIQUE_TRIES {
                    v = self.value(sub, depth + 1)?;
                    tries += 1;
                }
                if out.contains(&v) {
                    // An enum's unused options, in order, before giving up.
                    match sub
                        .get("enum")
                        .and_then(Value::as_array)
                        .and_then(|e| e.iter().find(|x| !out.contains(x)))
                    {
                        Some(x) => v = x.clone(),
                        None => break,
                    }
                }
            }
            out.push(v);
            i += 1;
        }
        if (out.len() as u64) < min {
            return Err(SchemaError::Unsatisfiable(format!(
                "no {min} items can be made for the array"
            )));
        }
        Ok(Value::Array(out))
    }

    fn string(&mut self, s: &Map<String, Value>) -> Result<Value, SchemaError> {
        let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = s
            .get("maxLength")
            .and_then(Value::as_u64)
            .map(|m| m as usize);
        if max.is_some_and(|m| m < min) {
            return Err(SchemaError::Unsatisfiable(format!(
                "minLength {min} exceeds maxLength {}",
                max.unwrap_or(0)
            )));
        }
        let mut text = if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            regex_gen::generate(p, self.rng).map_err(SchemaError::Pattern)?
        } else if let Some(f) = s.get("format").and_then(Value::as_str) {
            format_value(f, self.rng)
        } else {
            words(self.rng, 1, 4)
        };
        // Lengths count characters (code points), as JSON Schema does.
        let len = text.chars().count();
        if len < min {
            let filler: String = std::iter::repeat("abcdefghij")
                .flat_map(str::chars)
                .take(min - len)
                .collect();
            text.push_str(&filler);
        }
        if let Some(m) = max {
            if text.chars().count() > m {
                text = text.chars().take(m).collect();
            }
        }
        Ok(Value::String(text))
    }
}

/// The schema's type: `type` (the first non-null one of a list), else what its keywords imply.
fn type_of(s: &Map<String, Value>) -> &str {
    match s.get("type") {
        Some(Value::String(t)) => return t,
        Some(Value::Array(ts)) => {
            let names: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            if let Some(t) = names.iter().find(|t| **t != "null").or(names.first()) {
                return t;
            }
        }
        _ => {}
    }
    let has = |keys: &[&str]| keys.iter().any(|k| s.contains_key(*k));
    if has(&[
        "properties",
        "required",
        "additionalProperties",
        "minProperties",
    ]) {
        "object"
    } else if has(&["items", "prefixItems", "minItems", "maxItems"]) {
        "array"
    } else if has(&["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]) {
        "number"
    } else {
        "string"
    }
}

/// A string in one of the formats xgrammar knows (`STRING_SUPPORTED_FORMATS`); others get
/// words.
fn format_value(format: &str, rng: &mut DocRng) -> String {
    let word = *rng.pick(WORDS);
    let (h, m, sec) = (rng.below(24), rng.below(60), rng.below(60));
    let (y, mo, d) = (
        rng.between(2000, 2030),
        rng.between(1, 12),
        rng.between(1, 28),
    );
    match format {
        "date-time" => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{sec:02}Z"),
        "date" => format!("{y:04}-{mo:02}-{d:02}"),
        "time" => format!("{h:02}:{m:02}:{sec:02}Z"),
        "duration" => format!("P{}DT{}H", rng.between(1, 30), rng.between(1, 23)),
        "email" => format!("{word}@example.com"),
        "hostname" => format!("{word}.example.com"),
        "ipv4" => format!(
            "{}.{}.{}.{}",
            rng.between(1, 254),
            rng.below(256),
            rng.below(256),
            rng.between(1, 254)
        ),
        "ipv6" => format!("2001:db8::{:x}", rng.between(1, 0xffff)),
        "uri" => format!("https://example.com/{word}"),
        "uri-reference" => format!("/{word}"),
        "uri-template" => format!("https://example.com/{{{word}}}"),
        "json-pointer" => format!("/{word}/{}", rng.below(10)),
        "relative-json-pointer" => format!("{}/{word}", rng.below(3)),
        "uuid" => {
            let a = rng.next_u64();
            let b = rng.next_u64();
            format!(
                "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                8 + (b >> 62),
                (b >> 48) & 0xfff,
                b & 0xffff_ffff_ffff
            )
        }
        _ => words(rng, 1, 3),
    }
}

/// The bounds a number schema sets: (low, low exclusive, high, high exclusive). Draft 4's
/// boolean `exclusiveMinimum` and later drafts' numeric one are both read.
fn bounds(s: &Map<String, Value>) -> (Option<f64>, bool, Option<f64>, bool) {
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    let flag = |k: &str| s.get(k).and_then(Value::as_bool) == Some(true);
    let (mut lo, mut lo_ex) = (num("minimum"), flag("exclusiveMinimum"));
    if let Some(x) = num("exclusiveMinimum") {
        if lo.is_none_or(|l| x >= l) {
            (lo, lo_ex) = (Some(x), true);
        }
    }
    let (mut hi, mut hi_ex) = (num("maximum"), flag("exclusiveMaximum"));
    if let Some(x) = num("exclusiveMaximum") {
        if hi.is_none_or(|h| x <= h) {
            (hi, hi_ex) = (Some(x), true);
        }
    }
    (lo, lo_ex, hi, hi_ex)
}

/// A number (or integer) within the schema's bounds; open bounds get a span of 100.
fn number(s: &Map<String, Value>, integer: bool, rng: &mut DocRng) -> Result<Number, SchemaError> {
    let (lo, lo_ex, hi, hi_ex) = bounds(s);
    let (lo, hi) = match (lo, hi) {
        (None, None) => (0.0, 100.0),
        (Some(l), None) => (l, l + 100.0),
        (None, Some(h)) => (h - 100.0, h),
        (Some(l), Some(h)) => (l, h),
    };
    let unsat = || SchemaError::Unsatisfiable(format!("no number lies in [{lo}, {hi}]"));
    let step = s
        .get("multipleOf")
        .and_then(Value::as_f64)
        .filter(|m| *m > 0.0);
    if integer || step.is_some() {
        let m = step.unwrap_or(1.0);
        let m = if integer && m.fract() != 0.0 { 1.0 } else { m };
        let mut k_lo = (lo / m).ceil();
        if lo_ex && k_lo * m <= lo {
            k_lo += 1.0;
        }
        let mut k_hi = (hi / m).floor();
        if hi_ex && k_hi * m >= hi {
            k_hi -= 1.0;
        }
        if k_lo > k_hi || !k_lo.is_finite() || !k_hi.is_finite() {
            return Err(unsat());
        }
        let span = (k_hi - k_lo).min(1e15) as u64;
        let k = k_lo + rng.between(0, span) as f64;
        let v = k * m;
        return if m.fract() == 0.0 && v.abs() < 9.0e15 {
            Ok(Number::from(v as i64))
        } else {
            Number::from_f64(v).ok_or_else(unsat)
        };
    }
    if lo > hi || (lo == hi && (lo_ex || hi_ex)) {
        return Err(unsat());
    }
    // Two decimals inside the range; the midpoint when rounding lands on an exclusive bound.
    let raw = lo + (hi - lo) * rng.unit();
    let mut v = (raw * 100.0).round() / 100.0;
    let inside = |v: f64| (v > lo || (!lo_ex && v == lo)) && (v < hi || (!hi_ex && v == hi));
    if !inside(v) {
        v = (lo + hi) / 2.0;
    }
    if !inside(v) {
        return Err(unsat());
    }
    Number::from_f64(v).ok_or_else(unsat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gen(schema: Value, seed: u64) -> Value {
        generate(&schema, &mut DocRng::new(seed)).unwrap()
    }

    #[test]
    fn required_properties_always_appear_and_bounds_hold() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 3, "maxLength": 5},
                "age": {"type": "integer", "minimum": 18, "exclusiveMaximum": 21},
                "score": {"type": "number", "minimum": 0.5, "maximum": 0.75},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2, "maxItems": 4}
            },
            "required": ["name", "age", "score", "tags"]
        });
        for seed in 0..200 {
            let v = gen(schema.clone(), seed);
            let name = v["name"].as_str().unwrap();
            assert!((3..=5).contains(&name.chars().count()), "{v}");
            let age = v["age"].as_i64().unwrap();
            assert!((18..21).contains(&age), "{v}");
            let score = v["score"].as_f64().unwrap();
            assert!((0.5..=0.75).contains(&score), "{v}");
            let tags = v["tags"].as_array().unwrap();
            assert!((2..=4).contains(&tags.len()), "{v}");
        }
    }

    #[test]
    fn refs_to_defs_resolve_and_same_seed_repeats() {
        let schema = json!({
            "$defs": {"Pet": {"type": "object", "properties": {"kind": {"const": "cat"}},
                              "required": ["kind"]}},
            "type": "object",
            "properties": {"pet": {"$ref": "#/$defs/Pet"}},
            "required": ["pet"]
        });
        let a = gen(schema.clone(), 9);
        assert_eq!(a["pet"]["kind"], "cat");
        assert_eq!(a, gen(schema, 9));
    }

    #[test]
    fn unresolved_ref_and_impossible_ranges_are_errors() {
        let mut rng = DocRng::new(1);
        assert_eq!(
            generate(&json!({"$ref": "#/$defs/Nope"}), &mut rng),
            Err(SchemaError::UnresolvedRef("#/$defs/Nope".into()))
        );
        assert!(generate(
            &json!({"type": "integer", "minimum": 5, "maximum": 4}),
            &mut rng
        )
        .is_err());
    }

    #[test]
    fn all_of_tuples_unique_items_and_formats() {
        let schema = json!({
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "integer", "multipleOf": 5,
                                                        "minimum": 1, "maximum": 30}},
                 "required": ["a"]},
                {"properties": {"b": {"type": "array", "prefixItems": [{"type": "boolean"},
                                      {"type": "null"}], "items": false}},
                 "required": ["b"]}
            ],
            "properties": {
                "u": {"type": "array", "items": {"enum": [1, 2, 3]}, "minItems": 3,
                      "uniqueItems": true},
                "when": {"type": "string", "format": "date-time"},
                "m": {"type": "object", "additionalProperties": {"type": "integer"}}
            },
            "required": ["u", "when", "m"]
        });
        for seed in 0..100 {
            let v = gen(schema.clone(), seed);
            let a = v["a"].as_i64().unwrap();
            assert!(a % 5 == 0 && (5..=30).contains(&a), "{v}");
            let b = v["b"].as_array().unwrap();
            assert!(
                b.len() <= 2 && b.first().is_none_or(Value::is_boolean),
                "{v}"
            );
            let mut u: Vec<i64> = v["u"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            u.sort();
            assert_eq!(u, [1, 2, 3], "{v}");
            let when = v["when"].as_str().unwrap();
            assert!(
                when.len() == 20 && when.ends_with('Z') && &when[10..11] == "T",
                "{v}"
            );
            assert!(
                v["m"].as_object().unwrap().values().all(Value::is_i64),
                "{v}"
            );
        }
    }

    #[test]
    fn recursive_schema_ends() {
        let schema = json!({
            "$defs": {"Node": {"type": "object", "properties": {
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
            "$ref": "#/$defs/Node"
        });
        for seed in 0..50 {
            gen(schema.clone(), seed);
        }
    }
}
