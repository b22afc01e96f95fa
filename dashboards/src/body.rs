//! JSON request bodies, read field by field so that every refusal names its field.
//!
//! A body that is not JSON, or not a JSON object, is a 400. A JSON object whose fields are
//! wrong (unknown, missing, of the wrong type or with a bad value) is a 422 naming the field,
//! nested fields with a dotted path (`sample.value`). Bodies are not required to carry a
//! `Content-Type`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use waterline_core::alert::InputError;

use crate::error::ApiError;

/// A JSON object from a request body (or a nested object of one).
#[derive(Debug)]
pub(crate) struct Body {
    fields: Map<String, Value>,
    /// `""` at the top, `"sample."` inside `sample`.
    prefix: String,
}

/// A 422 for a field-level problem.
pub(crate) fn invalid(e: InputError) -> ApiError {
    ApiError::Unprocessable(e.to_string())
}

impl Body {
    /// Parses `bytes` as a JSON object that may only have the fields `known`. An empty body is
    /// an empty object when `optional`.
    pub(crate) fn parse(bytes: &[u8], optional: bool, known: &[&str]) -> Result<Body, ApiError> {
        let blank = bytes.iter().all(u8::is_ascii_whitespace);
        let value = if blank && optional {
            Value::Object(Map::new())
        } else if blank {
            return Err(ApiError::BadRequest(
                "the request body is empty; this endpoint takes a JSON object".into(),
            ));
        } else {
            serde_json::from_slice(bytes).map_err(|e| {
                ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))
            })?
        };
        let Value::Object(fields) = value else {
            return Err(ApiError::BadRequest(
                "the request body must be a JSON object".into(),
            ));
        };
        let body = Body {
            fields,
            prefix: String::new(),
        };
        body.only(known)?;
        Ok(body)
    }

    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    fn wrong(&self, field: &str, problem: impl Into<String>) -> ApiError {
        invalid(InputError::new(self.name(field), problem))
    }

    fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.fields.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(self.wrong(k, format!("unknown field; expected {}", known.join(", ")))),
            None => Ok(()),
        }
    }

    /// The field, treating `null` as absent.
    fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field).filter(|v| !v.is_null())
    }

    /// Fails with a 422 naming `field` when it is absent.
    pub(crate) fn required<T>(&self, field: &str, v: Option<T>) -> Result<T, ApiError> {
        v.ok_or_else(|| self.wrong(field, "is required"))
    }

    /// An optional string field.
    pub(crate) fn str(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(field, "must be a string")),
        }
    }

    /// An optional number field.
    pub(crate) fn number(&self, field: &str) -> Result<Option<f64>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong(field, "must be a finite number")),
            Some(_) => Err(self.wrong(field, "must be a number")),
        }
    }

    /// An optional array of numbers.
    pub(crate) fn numbers(&self, field: &str) -> Result<Option<Vec<f64>>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_f64()
                        .ok_or_else(|| self.wrong(field, format!("item {i} must be a number")))
                })
                .collect::<Result<Vec<f64>, ApiError>>()
                .map(Some),
            Some(_) => Err(self.wrong(field, "must be an array of numbers")),
        }
    }

    /// An optional boolean field.
    pub(crate) fn boolean(&self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(field, "must be true or false")),
        }
    }

    /// An optional RFC 3339 time field.
    pub(crate) fn time(&self, field: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.str(field)?
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        self.wrong(
                            field,
                            format!("`{s}` is not an RFC 3339 time with offset, e.g. 2026-03-01T08:00:00Z"),
                        )
                    })
            })
            .transpose()
    }

    /// An optional nested object that may only have the fields `known`.
    pub(crate) fn object(&self, field: &str, known: &[&str]) -> Result<Option<Body>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(m)) => {
                let inner = Body {
                    fields: m.clone(),
                    prefix: format!("{}.", self.name(field)),
                };
                inner.only(known)?;
                Ok(Some(inner))
            }
            Some(_) => Err(self.wrong(field, "must be a JSON object")),
        }
    }

    /// The dotted prefix of this object's fields (`""` or `"sample."`).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: ApiError) -> (u16, String) {
        match e {
            ApiError::BadRequest(m) => (400, m),
            ApiError::Unprocessable(m) => (422, m),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_bodies_are_400_and_bad_fields_422_naming_the_field() {
        assert_eq!(
            message(Body::parse(b"{oops", false, &[]).unwrap_err()).0,
            400
        );
        assert_eq!(message(Body::parse(b"[1]", false, &[]).unwrap_err()).0, 400);
        assert_eq!(message(Body::parse(b"", false, &[]).unwrap_err()).0, 400);
        assert!(Body::parse(b" ", true, &["note"]).is_ok());

        let (code, m) = message(Body::parse(br#"{"nope": 1}"#, false, &["note"]).unwrap_err());
        assert_eq!(
            (code, m.as_str()),
            (422, "`nope`: unknown field; expected note")
        );

        let b = Body::parse(
            br#"{"note": 3, "sample": {"value": "x"}}"#,
            false,
            &["note", "sample"],
        )
        .unwrap();
        assert_eq!(
            message(b.str("note").unwrap_err()).1,
            "`note`: must be a string"
        );
        let s = b
            .object("sample", &["value", "sampled_at"])
            .unwrap()
            .unwrap();
        assert_eq!(
            message(s.number("value").unwrap_err()).1,
            "`sample.value`: must be a number"
        );
        let (code, m) = message(
            s.required("sampled_at", s.time("sampled_at").unwrap())
                .unwrap_err(),
        );
        assert_eq!(
            (code, m.as_str()),
            (422, "`sample.sampled_at`: is required")
        );
    }

    #[test]
    fn null_is_absent() {
        let b = Body::parse(br#"{"note": null}"#, false, &["note"]).unwrap();
        assert_eq!(b.str("note").unwrap(), None);
    }
}
