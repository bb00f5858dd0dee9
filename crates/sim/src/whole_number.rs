//! Whole numbers in the JSON (and YAML) that runs record: written as integers, or as floats with
//! no fractional part (`769.0`, `2588.0`: pandas writes an integer column that held a missing
//! value so, and Python writes a float-typed count so). Past 2⁵³ a float no longer holds every
//! whole number, so no float beyond it is read as one.

use serde_json::{Number, Value};

/// The largest float read as a whole number, 2⁵³.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// `n` as a whole number ≥ 0.
pub fn whole_u64(n: &Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|x| *x >= 0.0 && x.fract() == 0.0 && *x <= MAX_EXACT)
            .map(|x| x as u64)
    })
}

/// `n` as a whole number of either sign.
pub fn whole_i64(n: &Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|x| x.fract() == 0.0 && x.abs() <= MAX_EXACT)
            .map(|x| x as i64)
    })
}

/// A JSON value as a whole number ≥ 0 (`None` for anything but such a number).
pub fn value_u64(v: &Value) -> Option<u64> {
    v.as_number().and_then(whole_u64)
}

/// A JSON value as a whole number of either sign.
pub fn value_i64(v: &Value) -> Option<i64> {
    v.as_number().and_then(whole_i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_and_whole_floats_only() {
        assert_eq!(value_u64(&json!(769)), Some(769));
        assert_eq!(value_u64(&json!(769.0)), Some(769));
        assert_eq!(value_u64(&json!(u64::MAX)), Some(u64::MAX));
        assert_eq!(value_u64(&json!(769.5)), None);
        assert_eq!(value_u64(&json!(-1)), None);
        assert_eq!(value_u64(&json!(-1.0)), None);
        assert_eq!(value_u64(&json!(1e19)), None, "beyond 2^53");
        assert_eq!(value_u64(&json!("7")), None);
        assert_eq!(value_i64(&json!(-3.0)), Some(-3));
        assert_eq!(value_i64(&json!(-3)), Some(-3));
        assert_eq!(value_i64(&json!(2.5)), None);
        assert_eq!(value_i64(&json!(u64::MAX)), None);
        assert_eq!(value_i64(&json!(9_007_199_254_740_992.0)), Some(1 << 53));
    }
}
