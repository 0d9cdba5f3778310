//! The body decoding the SDKs need beyond ours: gzip (also posthog-js's
//! `compression=gzip-js`, raw gzip bytes), and form-encoded bodies whose
//! `data` field holds the JSON, as is or base64-encoded (posthog-js,
//! mixpanel-browser, Mixpanel's Python client). Each step is bounded by the
//! body limit: base64 only shrinks, gzip is capped while inflating
//! (`ingest::body`).

use std::borrow::Cow;

use base64::engine::general_purpose::{GeneralPurposeConfig, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose};
use base64::{alphabet, Engine};

use crate::ingest::body;
use crate::ingest::{ErrorCode, IngestError};

/// What a form body says besides `data` (Mixpanel's `verbose`, `ip`,
/// `strict`: `1` or `0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FormFields {
    pub verbose: Option<bool>,
    pub ip: Option<bool>,
    pub strict: Option<bool>,
}

/// The JSON of a body, and its form fields when it was a form.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub json: Cow<'a, [u8]>,
    pub fields: FormFields,
}

/// Padding optional: clients differ.
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Gunzip when `gzip` or when the body starts with gzip's magic bytes
/// (posthog-js sends `gzip-js` bodies with neither a header nor a query
/// parameter saying so); then, when `form`, take the `data` field (JSON, or
/// base64 of JSON or of gzip). A body that starts with `data=` is taken as a
/// form whatever its content type says (sendBeacon and some clients send
/// `text/plain`).
pub fn decode(
    raw: &[u8],
    gzip: bool,
    form: bool,
    max_bytes: usize,
) -> Result<Decoded<'_>, IngestError> {
    let gzip = gzip || raw.starts_with(b"\x1f\x8b");
    let bytes = body::decode(raw, gzip, max_bytes)?;
    if !(form || bytes.starts_with(b"data=")) {
        return Ok(Decoded {
            json: bytes,
            fields: FormFields::default(),
        });
    }
    let mut fields = FormFields::default();
    let mut data: Option<Cow<'_, str>> = None;
    for (name, value) in form_urlencoded::parse(&bytes) {
        let flag = || match value.as_ref() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        };
        match name.as_ref() {
            "data" => data = Some(value.clone()),
            "verbose" => fields.verbose = flag(),
            "ip" => fields.ip = flag(),
            "strict" => fields.strict = flag(),
            _ => {}
        }
    }
    let data = data.ok_or_else(|| {
        IngestError::body(
            ErrorCode::MalformedJson,
            "the form body has no data field (send data=<JSON or base64 JSON>)",
        )
    })?;
    let trimmed = data.trim_start();
    let json = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        trimmed.as_bytes().to_vec()
    } else {
        let decoded = base64_decode(trimmed.trim_end())?;
        if decoded.starts_with(b"\x1f\x8b") {
            body::decode(&decoded, true, max_bytes)?.into_owned()
        } else {
            decoded
        }
    };
    Ok(Decoded {
        json: Cow::Owned(json),
        fields,
    })
}

fn base64_decode(s: &str) -> Result<Vec<u8>, IngestError> {
    // Standard alphabet first (padding optional), then the URL-safe one.
    STANDARD_ANY_PAD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(s.trim_end_matches('=')))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
        .map_err(|e| {
            IngestError::body(
                ErrorCode::MalformedJson,
                format!("the form's data field is neither JSON nor base64: {e}"),
            )
        })
}

/// NDJSON (one event per line, as Mixpanel's `/import` takes) as a JSON
/// array; `None` unless some line ends with `}` and the next starts with `{`
/// (which no single JSON text can hold: a raw newline cannot sit inside a
/// string, and two values need a comma between them).
pub fn ndjson_as_array(text: &[u8]) -> Option<Vec<u8>> {
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.trim_ascii())
        .filter(|l| !l.is_empty())
        .peekable();
    let ndjson = text
        .split(|&b| b == b'\n')
        .map(|l| l.trim_ascii())
        .filter(|l| !l.is_empty())
        .zip(lines.clone().skip(1))
        .any(|(a, b)| a.ends_with(b"}") && b.starts_with(b"{"));
    if !ndjson {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() + 2);
    out.push(b'[');
    if let Some(first) = lines.next() {
        out.extend_from_slice(first);
    }
    for line in lines {
        out.push(b',');
        out.extend_from_slice(line);
    }
    out.push(b']');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn plain_json_is_borrowed() {
        let d = decode(b"{\"a\":1}", false, false, 100).unwrap();
        assert!(matches!(d.json, Cow::Borrowed(_)));
    }

    #[test]
    fn form_with_url_encoded_json_and_fields() {
        let d = decode(
            b"data=%7B%22event%22%3A+%22x%22%7D&verbose=1&ip=0",
            false,
            true,
            1000,
        )
        .unwrap();
        assert_eq!(&*d.json, b"{\"event\": \"x\"}");
        assert_eq!(d.fields.verbose, Some(true));
        assert_eq!(d.fields.ip, Some(false));
        assert_eq!(d.fields.strict, None);
    }

    #[test]
    fn form_with_base64_json_padded_or_not() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"[{\"event\":\"x\"}]");
        for body in [
            format!("data={}", b64.replace('=', "%3D")),
            format!("data={}", b64.trim_end_matches('=')),
        ] {
            let d = decode(body.as_bytes(), false, false, 1000).unwrap();
            assert_eq!(&*d.json, b"[{\"event\":\"x\"}]");
        }
    }

    #[test]
    fn form_with_base64_gzip() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(gz(b"{\"a\":2}"));
        let body = format!("data={}", b64.replace('+', "%2B").replace('=', "%3D"));
        let d = decode(body.as_bytes(), false, true, 1000).unwrap();
        assert_eq!(&*d.json, b"{\"a\":2}");
    }

    #[test]
    fn gzip_js_raw_body_with_or_without_saying_so() {
        for said in [true, false] {
            let body = gz(b"[1]");
            let d = decode(&body, said, false, 1000).unwrap();
            assert_eq!(&*d.json, b"[1]");
        }
    }

    #[test]
    fn ndjson_lines_become_an_array() {
        assert_eq!(
            ndjson_as_array(b"{\"a\":1}\r\n\n{\"b\":2}\n").unwrap(),
            b"[{\"a\":1},{\"b\":2}]"
        );
        assert_eq!(ndjson_as_array(b"{\"a\":1}\n"), None);
        assert_eq!(ndjson_as_array(b"[{\"a\":1},\n{\"b\":2}]"), None);
        assert_eq!(ndjson_as_array(b"{\"a\":\n{\"b\":2}\n}"), None);
    }

    #[test]
    fn form_errors() {
        let e = decode(b"verbose=1", false, true, 1000).unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedJson);
        let e = decode(b"data=***", false, true, 1000).unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedJson);
    }

    #[test]
    fn limits_hold_through_base64_gzip() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(gz(&[b' '; 5000]));
        let body = format!("data={}", b64.replace('+', "%2B"));
        let e = decode(body.as_bytes(), false, true, 1000).unwrap_err();
        assert_eq!(e.code, ErrorCode::BodyTooLarge);
        let e = decode(&[b'x'; 1001], false, true, 1000).unwrap_err();
        assert_eq!(e.code, ErrorCode::BodyTooLarge);
    }
}
