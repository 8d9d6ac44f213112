//! [`AssertionBuilder`]: an [`Assertion`] field by field, checked once at
//! [`build`](AssertionBuilder::build) by the rules the canonical encoding enforces.
//!
//! ```
//! use steme_protocol::{Assertion, SigningKey, Value};
//!
//! let fact = Assertion::builder("urn:person:ada", "born")
//!     .object(1815)
//!     .source("wikipedia")
//!     .confidence(0.99)
//!     .issued_at(1_700_000_000_000)
//!     .build()?;
//! assert_eq!(fact.object, Value::Integer(1815));
//! let signed = fact.sign(&SigningKey::from_bytes(&[1; 32]))?;
//! # let _ = signed;
//! # Ok::<(), steme_protocol::AssertionError>(())
//! ```

use super::{Assertion, AssertionError, AssertionId, MAX_ASSERTION_LEN, Value};

/// Builds an [`Assertion`]; start with [`Assertion::builder`]. Fields not set keep the
/// defaults of the JSON form: no source (empty), no confidence, supersedes nothing,
/// `issued_at` 0. The object has no default: [`build`](Self::build) refuses a builder
/// without one.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct AssertionBuilder {
    subject: String,
    predicate: String,
    object: Option<Value>,
    source: String,
    confidence: Option<f64>,
    supersedes: Option<AssertionId>,
    issued_at: u64,
}

impl Assertion {
    /// A builder of an assertion about `subject`, with `predicate`.
    pub fn builder(subject: impl Into<String>, predicate: impl Into<String>) -> AssertionBuilder {
        AssertionBuilder {
            subject: subject.into(),
            predicate: predicate.into(),
            object: None,
            source: String::new(),
            confidence: None,
            supersedes: None,
            issued_at: 0,
        }
    }
}

impl AssertionBuilder {
    /// The object (required): a [`Value`], or anything that converts into one (`&str` and
    /// `String` are text, `i64` and `i32` integers, `f64` a float, `bool` a boolean).
    pub fn object(mut self, object: impl Into<Value>) -> Self {
        self.object = Some(object.into());
        self
    }

    /// Who or what asserts it.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// How sure the source is, within `0.0..=1.0`.
    pub fn confidence(mut self, confidence: f64) -> Self {
        self.confidence = Some(confidence);
        self
    }

    /// The id of the assertion this one replaces.
    pub fn supersedes(mut self, id: AssertionId) -> Self {
        self.supersedes = Some(id);
        self
    }

    /// The producer's clock when it made the assertion, ms since the Unix epoch. Left
    /// unset it is 0, so the same fields always give the same id.
    pub fn issued_at(mut self, ms_since_epoch: u64) -> Self {
        self.issued_at = ms_since_epoch;
        self
    }

    /// Stamps `issued_at` with this machine's clock now. Each call then gives a new id:
    /// leave it out for assertions that should deduplicate when produced again.
    pub fn issued_now(mut self) -> Self {
        self.issued_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// The assertion, checked as the canonical encoding checks it: a missing object
    /// ([`AssertionError::Missing`]), an empty or too long name, a non-finite float or a
    /// confidence outside `0.0..=1.0`, an encoding over [`MAX_ASSERTION_LEN`].
    pub fn build(self) -> Result<Assertion, AssertionError> {
        let object = self
            .object
            .ok_or(AssertionError::Missing { field: "object" })?;
        let assertion = Assertion {
            subject: self.subject,
            predicate: self.predicate,
            object,
            source: self.source,
            confidence: self.confidence,
            supersedes: self.supersedes,
            issued_at: self.issued_at,
        };
        assertion.validate()?;
        let len = assertion.encoded_len();
        if len > MAX_ASSERTION_LEN {
            return Err(AssertionError::TooLong {
                field: "assertion",
                len,
                max: MAX_ASSERTION_LEN,
            });
        }
        Ok(assertion)
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::Text(text)
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::Text(text.to_owned())
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Integer(i)
    }
}

impl From<i32> for Value {
    fn from(i: i32) -> Value {
        Value::Integer(i.into())
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Boolean(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn builds_the_same_assertion_as_the_struct_literal() -> Result<(), AssertionError> {
        let id = AssertionId([7; 32]);
        let built = Assertion::builder("urn:city:paris", "population")
            .object(2_102_650)
            .source("census-2023")
            .confidence(0.9)
            .supersedes(id)
            .issued_at(1_700_000_000_000)
            .build()?;
        let literal = Assertion {
            subject: "urn:city:paris".into(),
            predicate: "population".into(),
            object: Value::Integer(2_102_650),
            source: "census-2023".into(),
            confidence: Some(0.9),
            supersedes: Some(id),
            issued_at: 1_700_000_000_000,
        };
        assert_eq!(built, literal);
        let key = SigningKey::from_bytes(&[5; 32]);
        assert_eq!(built.sign(&key)?.id(), literal.sign(&key)?.id());
        Ok(())
    }

    #[test]
    fn defaults_match_the_json_form() -> Result<(), Box<dyn std::error::Error>> {
        let built = Assertion::builder("s", "p").object("o").build()?;
        let from_json: Assertion =
            serde_json::from_str(r#"{"subject":"s","predicate":"p","object":"o","source":""}"#)?;
        assert_eq!(built, from_json);
        assert_eq!(built.issued_at, 0);
        Ok(())
    }

    #[test]
    fn rejects_a_missing_object() {
        assert_eq!(
            Assertion::builder("s", "p").build(),
            Err(AssertionError::Missing { field: "object" })
        );
    }

    #[test]
    fn rejects_empty_names_bad_numbers_and_oversize() {
        assert_eq!(
            Assertion::builder("", "p").object(1).build(),
            Err(AssertionError::Empty { field: "subject" })
        );
        assert_eq!(
            Assertion::builder("s", "").object(1).build(),
            Err(AssertionError::Empty { field: "predicate" })
        );
        assert!(matches!(
            Assertion::builder("s", "p").object(f64::NAN).build(),
            Err(AssertionError::BadNumber {
                field: "object",
                ..
            })
        ));
        assert!(matches!(
            Assertion::builder("s", "p")
                .object(1)
                .confidence(1.5)
                .build(),
            Err(AssertionError::BadNumber { .. })
        ));
        assert!(matches!(
            Assertion::builder("s", "p")
                .object("x".repeat(MAX_ASSERTION_LEN))
                .build(),
            Err(AssertionError::TooLong {
                field: "assertion",
                ..
            })
        ));
    }

    #[test]
    fn issued_now_stamps_the_clock() -> Result<(), AssertionError> {
        let a = Assertion::builder("s", "p")
            .object(true)
            .issued_now()
            .build()?;
        assert!(a.issued_at > 1_700_000_000_000);
        Ok(())
    }
}
