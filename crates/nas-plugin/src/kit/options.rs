//! A strategy's options (its TOML table, as JSON) read into a serde struct.
//!
//! ```
//! use nas_plugin::kit::options::{self, parse_options};
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct Options {
//!     #[serde(deserialize_with = "options::positive_int")]
//!     population: usize,
//!     #[serde(deserialize_with = "options::fraction")]
//!     step: f64,
//! }
//! impl Default for Options {
//!     fn default() -> Self {
//!         Options { population: 20, step: 0.1 }
//!     }
//! }
//!
//! let o: Options = parse_options("mine", &serde_json::json!({"population": 8})).unwrap();
//! assert_eq!((o.population, o.step), (8, 0.1));
//! let e = parse_options::<Options>("mine", &serde_json::json!({"popsize": 8})).unwrap_err();
//! assert_eq!(e, "mine has no option `popsize`; accepted options: `population`, `step`");
//! let e = parse_options::<Options>("mine", &serde_json::json!({"step": 2})).unwrap_err();
//! assert_eq!(e, "mine option `step` must be a number in (0, 1], not `2`");
//! ```

use serde::Deserialize as _;
use serde::de::{DeserializeOwned, Deserializer, Error as _, Visitor};
use serde_json::Value;

/// Reads `value` into `T`: `null` (no table) gives `T::default()`; anything but a table, an
/// unknown key, or a bad value is an error that names `strategy` and the key. `T` is a
/// `#[serde(default, deny_unknown_fields)]` struct; the `deserialize_with` helpers of this
/// module add range checks with messages that say what is expected.
pub fn parse_options<T: DeserializeOwned + Default>(
    strategy: &str,
    value: &Value,
) -> Result<T, String> {
    let map = match value {
        Value::Null => return Ok(T::default()),
        Value::Object(map) => map,
        other => return Err(format!("{strategy} options must be a table, not `{other}`")),
    };
    let whole = match serde_json::from_value::<T>(value.clone()) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    // serde's message says neither which key nor all accepted ones: find the culprit.
    if let Some(keys) = accepted_keys::<T>()
        && let Some(unknown) = map.keys().find(|k| !keys.contains(&k.as_str()))
    {
        if keys.is_empty() {
            return Err(format!(
                "{strategy} has no option `{unknown}`; it takes no options"
            ));
        }
        let accepted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
        return Err(format!(
            "{strategy} has no option `{unknown}`; accepted options: {}",
            accepted.join(", ")
        ));
    }
    for (key, v) in map {
        let alone = Value::Object([(key.clone(), v.clone())].into_iter().collect());
        if let Err(e) = serde_json::from_value::<T>(alone) {
            return Err(format!(
                "{strategy} option `{key}` {}",
                explain(&e.to_string(), v)
            ));
        }
    }
    Err(format!("{strategy} options: {whole}"))
}

/// Turns serde's "invalid type: string \"x\", expected f64" into "must be a number, not `"x"`";
/// messages from this module's helpers already read "must be ...".
fn explain(message: &str, value: &Value) -> String {
    if message.starts_with("must ") {
        return message.to_string();
    }
    match message.rsplit_once("expected ") {
        Some((_, expected)) => {
            let expected = match expected {
                "f64" | "f32" => "a number",
                "u64" | "usize" | "u32" | "u16" | "u8" => "a non-negative integer",
                "i64" | "isize" | "i32" | "i16" | "i8" => "an integer",
                other => other,
            };
            format!("must be {expected}, not `{value}`")
        }
        None => format!("is not valid: {message}"),
    }
}

/// The field names of a derived `Deserialize` struct, without deserializing anything: serde
/// hands them to `deserialize_struct`.
fn accepted_keys<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut keys = None;
    let _ = T::deserialize(FieldNames(&mut keys));
    keys
}

struct FieldNames<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(Self::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(Self::Error::custom("field names only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// A field type the integer helpers fill: the integer itself, or `Some` of it.
pub trait IntField: Sized {
    fn from_u64(n: u64) -> Option<Self>;
}

impl IntField for u64 {
    fn from_u64(n: u64) -> Option<Self> {
        Some(n)
    }
}
impl IntField for usize {
    fn from_u64(n: u64) -> Option<Self> {
        usize::try_from(n).ok()
    }
}
impl IntField for u32 {
    fn from_u64(n: u64) -> Option<Self> {
        u32::try_from(n).ok()
    }
}
impl<T: IntField> IntField for Option<T> {
    fn from_u64(n: u64) -> Option<Self> {
        T::from_u64(n).map(Some)
    }
}

/// A field type the number helpers fill: `f64` or `Option<f64>`.
pub trait FloatField: Sized {
    fn from_f64(x: f64) -> Self;
}
impl FloatField for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
}
impl FloatField for Option<f64> {
    fn from_f64(x: f64) -> Self {
        Some(x)
    }
}

/// A whole number; TOML users write `max_size = 1e6`, a float, so whole floats count.
fn whole(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f as u64)
    })
}

fn int_at_least<'de, D: Deserializer<'de>, T: IntField>(
    d: D,
    min: u64,
    what: &str,
) -> Result<T, D::Error> {
    let v = Value::deserialize(d)?;
    whole(&v)
        .filter(|&n| n >= min)
        .and_then(T::from_u64)
        .ok_or_else(|| D::Error::custom(format!("must be {what}, not `{v}`")))
}

fn number<'de, D: Deserializer<'de>, T: FloatField>(
    d: D,
    ok: impl Fn(f64) -> bool,
    what: &str,
) -> Result<T, D::Error> {
    let v = Value::deserialize(d)?;
    v.as_f64()
        .filter(|x| x.is_finite() && ok(*x))
        .map(T::from_f64)
        .ok_or_else(|| D::Error::custom(format!("must be {what}, not `{v}`")))
}

/// `deserialize_with` for an integer >= 1 (`usize`, `u64`, `u32` or an `Option` of one).
pub fn positive_int<'de, D: Deserializer<'de>, T: IntField>(d: D) -> Result<T, D::Error> {
    int_at_least(d, 1, "a positive integer")
}

/// `deserialize_with` for an integer >= 0 that also accepts whole floats.
pub fn non_negative_int<'de, D: Deserializer<'de>, T: IntField>(d: D) -> Result<T, D::Error> {
    int_at_least(d, 0, "a non-negative integer")
}

/// `deserialize_with` for a finite number > 0 (`f64` or `Option<f64>`).
pub fn positive_number<'de, D: Deserializer<'de>, T: FloatField>(d: D) -> Result<T, D::Error> {
    number(d, |x| x > 0.0, "a positive number")
}

/// `deserialize_with` for a number in (0, 1], e.g. a fraction of a range.
pub fn fraction<'de, D: Deserializer<'de>, T: FloatField>(d: D) -> Result<T, D::Error> {
    number(d, |x| x > 0.0 && x <= 1.0, "a number in (0, 1]")
}

/// A range check after parsing, for what the helpers above do not cover: `Err` with
/// "`strategy` option `key` must be `what`, not `value`" unless `ok`.
pub fn check(
    strategy: &str,
    key: &str,
    ok: bool,
    what: &str,
    value: impl std::fmt::Display,
) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{strategy} option `{key}` must be {what}, not `{value}`"
        ))
    }
}
