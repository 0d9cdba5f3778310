//! The one error type of the ingest path, and the one table from error code
//! to HTTP status.

use std::fmt;

/// At most this many details are returned; the message still counts them all.
pub const MAX_DETAILS: usize = 100;

/// Why a request body was refused. Each code maps to exactly one HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The body (after decompression) is larger than `max_body_bytes`.
    BodyTooLarge,
    /// `Content-Encoding: gzip` but the body is not a valid gzip stream.
    InvalidGzip,
    /// Not one RFC 8259 JSON text (syntax, trailing data, invalid UTF-8, empty body).
    MalformedJson,
    /// Valid JSON nested deeper than `max_depth` containers.
    TooDeep,
    /// A JSON string (key or value) longer than `max_string_bytes` once decoded.
    StringTooLong,
    /// A batch with more than `max_batch_events` events.
    BatchTooLarge,
    /// Well-formed JSON, but one or more events break the field rules.
    InvalidEvent,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::BodyTooLarge,
        ErrorCode::InvalidGzip,
        ErrorCode::MalformedJson,
        ErrorCode::TooDeep,
        ErrorCode::StringTooLong,
        ErrorCode::BatchTooLarge,
        ErrorCode::InvalidEvent,
    ];

    /// The machine-readable code sent to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::InvalidGzip => "invalid_gzip",
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::TooDeep => "too_deep",
            ErrorCode::StringTooLong => "string_too_long",
            ErrorCode::BatchTooLarge => "batch_too_large",
            ErrorCode::InvalidEvent => "invalid_event",
        }
    }

    /// The HTTP status for this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::InvalidGzip
            | ErrorCode::MalformedJson
            | ErrorCode::TooDeep
            | ErrorCode::StringTooLong
            | ErrorCode::BatchTooLarge
            | ErrorCode::InvalidEvent => 400,
        }
    }
}

/// One problem: which event (`index`, the position in the batch, 0 for a
/// single object; `None` when the problem is with the body as a whole), which
/// top-level field (`None` when it is the event or the body itself), and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detail {
    pub index: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

/// A refused request: status, code, a summary message and the details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<Detail>,
}

impl IngestError {
    /// An error about the body as a whole, with a single detail that repeats
    /// the message (so clients can always read `details[0]`).
    pub fn body(code: ErrorCode, message: impl Into<String>) -> Self {
        let message = message.into();
        IngestError {
            code,
            details: vec![Detail {
                index: None,
                field: None,
                message: message.clone(),
            }],
            message,
        }
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status(),
            self.code.as_str(),
            self.message
        )
    }
}

impl std::error::Error for IngestError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_body_too_large_is_413() {
        for code in ErrorCode::ALL {
            let want = if code == ErrorCode::BodyTooLarge {
                413
            } else {
                400
            };
            assert_eq!(code.status(), want, "{code:?}");
        }
    }

    #[test]
    fn codes_are_distinct_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(seen.insert(s));
        }
    }

    #[test]
    fn body_error_has_one_detail() {
        let e = IngestError::body(ErrorCode::MalformedJson, "bad");
        assert_eq!(e.details.len(), 1);
        assert_eq!(e.details[0].index, None);
        assert_eq!(e.to_string(), "400 malformed_json: bad");
    }
}
