//! Step 1 of the ingest path: the raw request body to the JSON bytes, with
//! the size limit applied after decompression; and [`Gunzip`], the one gzip
//! inflater of the project (request bodies here, import bodies streamed by
//! `imports/job.py`, import files read by `imports/sources.py`).

use std::borrow::Cow;
use std::io::Write;

use flate2::write::MultiGzDecoder;

use super::error::{ErrorCode, IngestError};

/// The most one [`Gunzip::step`] hands out: a small gzip body can inflate to
/// gigabytes, which must not land in memory at once.
pub const INFLATE_STEP_BYTES: usize = 4 << 20;

/// Input is inflated this many bytes at a time (deflate inflates at most
/// 1032:1, so one slice yields at most ~1 MiB).
const SLICE_BYTES: usize = 1 << 10;
const SLICE_MAX_OUTPUT: usize = SLICE_BYTES * 1032;

/// Incremental gunzip of a body fed in pieces, several gzip members in a row
/// included (RFC 1952 allows it: `cat a.gz b.gz`), in bounded steps.
pub struct Gunzip {
    decoder: MultiGzDecoder<Vec<u8>>,
    fed: bool,
}

impl Default for Gunzip {
    fn default() -> Self {
        Self::new()
    }
}

impl Gunzip {
    pub fn new() -> Self {
        Gunzip {
            decoder: MultiGzDecoder::new(Vec::new()),
            fed: false,
        }
    }

    /// Inflates `data[start..]` until [`INFLATE_STEP_BYTES`] or less are
    /// out, or all of it is read; appends them to `out` and returns how far
    /// it read (call again from there while it is short of `data.len()`).
    pub fn step(&mut self, data: &[u8], start: usize, out: &mut Vec<u8>) -> Result<usize, String> {
        let mut at = start;
        // The decoder may hold up to its buffer (32 KiB) beyond what it wrote.
        let room = INFLATE_STEP_BYTES - SLICE_MAX_OUTPUT - (64 << 10);
        while at < data.len() && self.decoder.get_ref().len() <= room {
            let end = (at + SLICE_BYTES).min(data.len());
            self.fed = true;
            self.decoder
                .write_all(&data[at..end])
                .map_err(|e| format!("invalid gzip data: {e}"))?;
            at = end;
        }
        self.decoder
            .flush()
            .map_err(|e| format!("invalid gzip data: {e}"))?;
        out.append(self.decoder.get_mut());
        Ok(at)
    }

    /// The end of the body: appends what is left to `out`; an error when the
    /// last member is incomplete (nothing fed at all is not one).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        if self.fed {
            self.decoder
                .try_finish()
                .map_err(|_| "the gzip stream ends early: it was cut off".to_owned())?;
        }
        out.append(self.decoder.get_mut());
        Ok(())
    }
}

/// Decompress (when `gzip`) and check the size limit. A gzip bomb costs at
/// most `max_bytes` plus one [`Gunzip::step`] of memory before it is refused.
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
    let invalid =
        |e: String| IngestError::body(ErrorCode::InvalidGzip, format!("invalid gzip body: {e}"));
    let mut gunzip = Gunzip::new();
    // A guess at the ratio of typical JSON; grows as needed.
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max_bytes + 1));
    let mut at = 0;
    while at < body.len() {
        at = gunzip.step(body, at, &mut out).map_err(invalid)?;
        if out.len() > max_bytes {
            return Err(too_large(max_bytes));
        }
    }
    gunzip.finish(&mut out).map_err(invalid)?;
    if out.len() > max_bytes {
        return Err(too_large(max_bytes));
    }
    Ok(Cow::Owned(out))
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

    /// All of `data` through a [`Gunzip`] fed `piece` bytes at a time.
    fn streamed(data: &[u8], piece: usize) -> Result<Vec<u8>, String> {
        let mut gunzip = Gunzip::new();
        let mut out = Vec::new();
        for chunk in data.chunks(piece) {
            let mut at = 0;
            while at < chunk.len() {
                at = gunzip.step(chunk, at, &mut out)?;
            }
        }
        gunzip.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn streamed_members_in_any_split() {
        let mut body = gz(&b"a\n".repeat(1000));
        body.extend(gz(&b"b\n".repeat(10)));
        let mut expected = b"a\n".repeat(1000);
        expected.extend(b"b\n".repeat(10));
        for piece in [1, 7, 100, body.len()] {
            assert_eq!(streamed(&body, piece).unwrap(), expected, "piece {piece}");
        }
    }

    #[test]
    fn a_streamed_bomb_inflates_in_bounded_steps() {
        let bomb = gz(&vec![b'\n'; 64 << 20]);
        let mut gunzip = Gunzip::new();
        let (mut at, mut total) = (0, 0);
        while at < bomb.len() {
            let mut out = Vec::new();
            at = gunzip.step(&bomb, at, &mut out).unwrap();
            assert!(out.len() <= INFLATE_STEP_BYTES, "{}", out.len());
            total += out.len();
        }
        let mut tail = Vec::new();
        gunzip.finish(&mut tail).unwrap();
        assert_eq!(total + tail.len(), 64 << 20);
    }

    #[test]
    fn streamed_errors_say_what_is_wrong() {
        let full = gz(&b"a\n".repeat(100));
        let cut = streamed(&full[..full.len() - 4], 10).unwrap_err();
        assert!(cut.contains("ends early"), "{cut}");
        let bad = streamed(b"not gzip at all", 10).unwrap_err();
        assert!(bad.contains("invalid gzip"), "{bad}");
        assert_eq!(streamed(b"", 10).unwrap(), b"");
    }

    #[test]
    fn gzip_with_trailing_garbage_is_invalid() {
        let mut body = gz(b"{}");
        body.extend_from_slice(b"xyz");
        let e = decode(&body, true, 1000).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidGzip);
    }
}
