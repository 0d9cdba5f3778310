//! Step 1 of the ingest path: the raw request body to the JSON bytes, with
//! the size limit applied after decompression.

use std::borrow::Cow;
use std::io::Read;

use flate2::read::MultiGzDecoder;

use super::error::{ErrorCode, IngestError};

/// Decompress (when `gzip`) and check the size limit. A gzip stream may hold
/// several members (RFC 1952 allows it; they are concatenated). The
/// decompressed size is capped while inflating, so a gzip bomb costs at most
/// `max_bytes + 1` bytes of memory before it is refused.
pub fn decode(body: &[u8], gzip: bool, max_bytes: usize) -> Result<Cow<'_, [u8]>, IngestError> {
    if !gzip {
        if body.len() > max_bytes {
            return Err(too_large(max_bytes));
        }
        return Ok(Cow::Borrowed(body));
    }
    if body.is_empty() {
        return Err(IngestError::body(
            ErrorCode::InvalidGzip,
            "invalid gzip body: empty",
        ));
    }
    // A guess at the ratio of typical JSON; grows as needed up to the cap.
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max_bytes + 1));
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut reader = MultiGzDecoder::new(body).take(limit);
    match reader.read_to_end(&mut out) {
        Ok(_) if out.len() > max_bytes => Err(too_large(max_bytes)),
        Ok(_) => Ok(Cow::Owned(out)),
        Err(e) => Err(IngestError::body(
            ErrorCode::InvalidGzip,
            format!("invalid gzip body: {e}"),
        )),
    }
}

fn too_large(max_bytes: usize) -> IngestError {
    IngestError::body(
        ErrorCode::BodyTooLarge,
        format!("request body is larger than the limit of {max_bytes} bytes"),
    )
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
    fn plain_body_is_borrowed() {
        let b = b"{\"a\":1}";
        assert!(matches!(decode(b, false, 100).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn plain_body_over_limit_is_413() {
        let e = decode(&[b' '; 11], false, 10).unwrap_err();
        assert_eq!(e.code, ErrorCode::BodyTooLarge);
        assert_eq!(e.status(), 413);
        assert!(decode(&[b' '; 10], false, 10).is_ok());
    }

    #[test]
    fn gzip_round_trip() {
        let data = br#"{"event_name":"x"}"#;
        assert_eq!(&*decode(&gz(data), true, 100).unwrap(), data);
    }

    #[test]
    fn gzip_multi_member() {
        let mut body = gz(b"[{\"a\":1},");
        body.extend(gz(b"{\"b\":2}]"));
        assert_eq!(
            &*decode(&body, true, 100).unwrap(),
            b"[{\"a\":1},{\"b\":2}]"
        );
    }

    #[test]
    fn gzip_exactly_at_limit_is_ok_one_over_is_413() {
        let data = vec![b' '; 1000];
        assert!(decode(&gz(&data), true, 1000).is_ok());
        let e = decode(&gz(&data), true, 999).unwrap_err();
        assert_eq!(e.code, ErrorCode::BodyTooLarge);
    }

    #[test]
    fn gzip_bomb_is_413_without_inflating_it_all() {
        // 64 MiB of zeros compress to ~64 KiB.
        let data = vec![0u8; 64 << 20];
        let bomb = gz(&data);
        assert!(bomb.len() < 200_000);
        let e = decode(&bomb, true, 1 << 20).unwrap_err();
        assert_eq!(e.code, ErrorCode::BodyTooLarge);
    }

    #[test]
    fn bad_gzip_is_400_invalid_gzip() {
        for bad in [
            &b""[..],
            b"{\"event_name\":\"x\"}",
            b"\x1f\x8b\x08\x00garbage",
        ] {
            let e = decode(bad, true, 100).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidGzip, "{bad:?}");
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn truncated_gzip_is_invalid() {
        let full = gz(br#"{"event_name":"something fairly long to compress"}"#);
        let e = decode(&full[..full.len() - 6], true, 1000).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidGzip);
    }

    #[test]
    fn gzip_with_trailing_garbage_is_invalid() {
        let mut body = gz(b"{}");
        body.extend_from_slice(b"xyz");
        let e = decode(&body, true, 1000).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidGzip);
    }
}
