//! The bulk-import path (`POST /v1/events/import`): NDJSON lines in, COPY
//! rows out, with each line judged on its own.
//!
//! Unlike a `/v1/events` batch, an import is not all or nothing: a migration
//! of millions of events must not stop at one bad line, so invalid lines are
//! counted and reported by line number while the valid ones are kept. Every
//! line goes through the same steps as a request body ([`super::json`],
//! [`super::event`]): the rules exist once.
//!
//! The caller streams the body and hands over chunks of whole lines; line
//! numbers continue from chunk to chunk through `first_line`.

use super::copy;
use super::error::MAX_DETAILS;
use super::event::{self, Problems};
use super::json::{self, JsonLimits};
use super::{json_error_code, ErrorCode, Limits, Request};
use crate::enrich::Enricher;

/// One rejected line (a line with several problems gives several).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number within the whole import.
    pub line: u64,
    pub code: ErrorCode,
    /// The event's top-level field at fault, when there is one.
    pub field: Option<String>,
    pub message: String,
}

/// The outcome of one chunk of lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreparedLines {
    /// COPY text rows of the valid lines, in order, each ending in `\n`.
    pub rows: Vec<u8>,
    /// Valid lines (rows).
    pub count: usize,
    /// Each row's `event_id`, in order.
    pub event_ids: Vec<Option<String>>,
    /// COPY text rows `project_id<TAB>event_id` of the rows with an id, for
    /// claiming them in `event_ids` with one COPY.
    pub id_rows: Vec<u8>,
    /// Lines in the chunk, blank ones included.
    pub lines: u64,
    /// Invalid lines.
    pub rejected: u64,
    /// The first problems, at most `max_errors`.
    pub errors: Vec<LineError>,
    /// Problems found, including those past `max_errors`.
    pub problems: u64,
    /// Invalid lines by the code of their first problem, in
    /// [`ErrorCode::ALL`] order.
    pub rejected_by_code: [u64; ErrorCode::ALL.len()],
}

/// Prepare every line of `chunk`: lines end with `\n` (a `\r` before it is
/// dropped); a last line without one counts too. Blank lines are skipped
/// (but numbered). `req` should carry no peer address or headers and be
/// `historical`: imported events describe themselves.
pub fn prepare_lines(
    chunk: &[u8],
    first_line: u64,
    req: &Request<'_>,
    limits: &Limits,
    enricher: &Enricher,
    max_errors: usize,
) -> PreparedLines {
    let ctx = event::RequestContext::new(req, limits, enricher);
    let json_limits = JsonLimits {
        max_depth: limits.max_depth(),
        max_string_bytes: limits.max_string_bytes(),
    };
    let mut out = PreparedLines {
        rows: Vec::with_capacity(chunk.len() + chunk.len() / 2),
        ..PreparedLines::default()
    };
    let reject = |out: &mut PreparedLines, problems: Vec<LineError>| {
        out.rejected += 1;
        out.problems += problems.len() as u64;
        if let Some(first) = problems.first() {
            let i = ErrorCode::ALL.iter().position(|&c| c == first.code);
            out.rejected_by_code[i.unwrap_or(0)] += 1;
        }
        let room = max_errors.saturating_sub(out.errors.len());
        out.errors.extend(problems.into_iter().take(room));
    };

    let mut rest = chunk;
    while !rest.is_empty() {
        let (raw, after) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = after;
        let number = first_line + out.lines;
        out.lines += 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
            continue;
        }
        if line.len() > limits.max_body_bytes() {
            let message = format!(
                "line of {} bytes is longer than the limit of {}",
                line.len(),
                limits.max_body_bytes()
            );
            reject(
                &mut out,
                vec![line_error(number, ErrorCode::BodyTooLarge, None, message)],
            );
            continue;
        }
        let doc = match json::parse(line, json_limits) {
            Ok(doc) => doc,
            Err(e) => {
                let error = line_error(number, json_error_code(e.kind), None, e.message);
                reject(&mut out, vec![error]);
                continue;
            }
        };
        let mut problems = Problems::default();
        match event::encode_event(
            &doc,
            json::Document::ROOT,
            0,
            &ctx,
            &mut out.rows,
            &mut problems,
        ) {
            Some(event_id) => {
                out.count += 1;
                if let Some(id) = &event_id {
                    write_id_row(&mut out.id_rows, req.project_id, id);
                }
                out.event_ids.push(event_id);
            }
            None => {
                let errors = problems
                    .details
                    .into_iter()
                    .map(|d| line_error(number, ErrorCode::InvalidEvent, d.field, d.message))
                    .collect();
                reject(&mut out, errors);
            }
        }
    }
    out
}

/// One `COPY event_ids (project_id, event_id)` text row.
pub fn write_id_row(out: &mut Vec<u8>, project_id: i64, event_id: &str) {
    use std::io::Write;
    let _ = write!(out, "{project_id}\t");
    copy::write_text(out, event_id.as_bytes());
    out.push(b'\n');
}

fn line_error(line: u64, code: ErrorCode, field: Option<String>, message: String) -> LineError {
    LineError {
        line,
        code,
        field,
        message,
    }
}

/// The default cap on reported problems, as for a request.
pub const MAX_ERRORS: usize = MAX_DETAILS;

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-26T10:00:00Z
    const RECEIVED: i64 = 1_795_687_200_000_000;

    fn prepare(chunk: &[u8], first_line: u64, limits: &Limits) -> PreparedLines {
        let req = Request {
            project_id: 3,
            received_at_us: RECEIVED,
            historical: true,
            ..Request::default()
        };
        prepare_lines(
            chunk,
            first_line,
            &req,
            limits,
            Enricher::shared_default(),
            MAX_ERRORS,
        )
    }

    fn rows(p: &PreparedLines) -> Vec<Vec<String>> {
        String::from_utf8(p.rows.clone())
            .unwrap()
            .lines()
            .map(|r| r.split('\t').map(str::to_owned).collect())
            .collect()
    }

    fn lines_of(errors: &[LineError]) -> Vec<u64> {
        errors.iter().map(|e| e.line).collect()
    }

    #[test]
    fn crlf_blank_lines_and_a_last_line_without_newline() {
        let chunk =
            b"{\"event_name\":\"a\"}\r\n\r\n   \n\t\r\n{\"event_name\":\"b\",\"event_id\":\"x\"}";
        let p = prepare(chunk, 1, &Limits::default());
        assert_eq!((p.lines, p.count, p.rejected), (5, 2, 0));
        assert_eq!(p.event_ids, vec![None, Some("x".to_owned())]);
        assert_eq!(p.id_rows, b"3\tx\n");
        let names: Vec<String> = rows(&p).iter().map(|r| r[4].clone()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn invalid_lines_are_numbered_from_first_line_and_never_block_the_rest() {
        let chunk = b"{\"event_name\":\"ok\"}\n{\"event_name\":\"\"}\nnot json\n[1]\n\
                      {\"event_name\":\"ok\",\"metric_name\":\"m\"}\n{\"event_name\":\"ok\"}\n";
        let p = prepare(chunk, 101, &Limits::default());
        assert_eq!((p.lines, p.count, p.rejected), (6, 2, 4));
        assert_eq!(lines_of(&p.errors), [102, 103, 104, 105]);
        assert_eq!(p.errors[0].field.as_deref(), Some("event_name"));
        assert_eq!(p.errors[1].code, ErrorCode::MalformedJson);
        assert!(
            p.errors[2].message.contains("JSON object"),
            "{:?}",
            p.errors[2]
        );
        assert_eq!(p.errors[3].field.as_deref(), Some("metric_value"));
        let by_code: Vec<(ErrorCode, u64)> = ErrorCode::ALL
            .into_iter()
            .zip(p.rejected_by_code)
            .filter(|&(_, n)| n > 0)
            .collect();
        assert_eq!(
            by_code,
            [(ErrorCode::MalformedJson, 1), (ErrorCode::InvalidEvent, 3)]
        );
    }

    #[test]
    fn a_line_cut_off_mid_event_is_rejected() {
        let p = prepare(
            b"{\"event_name\":\"a\"}\n{\"event_name\":\"b\",\"pl",
            1,
            &Limits::default(),
        );
        assert_eq!((p.lines, p.count, p.rejected), (2, 1, 1));
        assert_eq!(p.errors[0].line, 2);
        assert_eq!(p.errors[0].code, ErrorCode::MalformedJson);
    }

    #[test]
    fn imported_events_from_the_future_are_stored_at_receipt() {
        // Its own timestamp, or its sent_at standing in for one: either way
        // the time sent is kept in properties.
        let chunk = b"{\"event_name\":\"a\",\"timestamp\":\"2999-01-01T00:00:00Z\"}\n\
                      {\"event_name\":\"b\",\"sent_at\":\"2999-01-02T00:00:00Z\"}\n\
                      {\"event_name\":\"c\",\"timestamp\":\"2026-11-27T09:00:00Z\"}\n";
        let p = prepare(chunk, 1, &Limits::default());
        let r = rows(&p);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0][0], "2026-11-26 10:00:00.000000+00");
        assert_eq!(r[0][35], r#"{"future_timestamp":"2999-01-01T00:00:00Z"}"#);
        assert_eq!(r[1][0], "2026-11-26 10:00:00.000000+00");
        assert_eq!(r[1][35], r#"{"future_timestamp":"2999-01-02T00:00:00Z"}"#);
        assert_eq!(r[2][0], "2026-11-27 09:00:00.000000+00");
        assert_eq!(r[2][35], "{}");
    }

    #[test]
    fn events_keep_their_own_timestamps_and_default_to_receipt() {
        let chunk = b"{\"event_name\":\"old\",\"timestamp\":\"2019-03-04T05:06:07Z\"}\n{\"event_name\":\"now\"}\n";
        let p = prepare(chunk, 1, &Limits::default());
        let r = rows(&p);
        assert_eq!(r[0][0], "2019-03-04 05:06:07.000000+00");
        assert_eq!(r[1][0], "2026-11-26 10:00:00.000000+00");
        // No request address or user agent is applied to imported events.
        assert_eq!((r[0][9].as_str(), r[0][10].as_str()), ("\\N", "\\N"));
    }

    #[test]
    fn sent_at_corrects_no_skew_and_stands_in_for_a_missing_timestamp() {
        let chunk = b"{\"event_name\":\"a\",\"timestamp\":\"2019-03-04T05:06:07Z\",\"sent_at\":\"2019-03-04T05:06:09Z\"}\n\
                      {\"event_name\":\"b\",\"sent_at\":\"2019-03-04T05:06:09Z\"}\n";
        let r = rows(&prepare(chunk, 1, &Limits::default()));
        assert_eq!(r[0][0], "2019-03-04 05:06:07.000000+00");
        assert_eq!(r[1][0], "2019-03-04 05:06:09.000000+00");
        assert_eq!(r[1][2], "2019-03-04 05:06:09.000000+00");
        assert_eq!(r[1][1], "2026-11-26 10:00:00.000000+00");
    }

    #[test]
    fn limits_apply_per_line() {
        let limits = Limits::new(64, 1, 2, 16).unwrap();
        let long = format!("{{\"event_name\":\"{}\"}}", "x".repeat(80));
        let chunk = format!(
            "{long}\n{{\"event_name\":\"a\",\"p\":{{\"q\":{{}}}}}}\n{{\"event_name\":\"{}\"}}\n{{\"event_name\":\"a\"}}\n",
            "y".repeat(20)
        );
        let p = prepare(chunk.as_bytes(), 1, &limits);
        assert_eq!((p.lines, p.count, p.rejected), (4, 1, 3));
        let codes: Vec<ErrorCode> = p.errors.iter().map(|e| e.code).collect();
        assert_eq!(
            codes,
            [
                ErrorCode::BodyTooLarge,
                ErrorCode::TooDeep,
                ErrorCode::StringTooLong
            ]
        );
    }

    #[test]
    fn errors_are_capped_but_counted() {
        let chunk = "x\n".repeat(MAX_ERRORS + 50);
        let p = prepare(chunk.as_bytes(), 1, &Limits::default());
        assert_eq!(p.rejected, (MAX_ERRORS + 50) as u64);
        assert_eq!(p.problems, (MAX_ERRORS + 50) as u64);
        assert_eq!(p.errors.len(), MAX_ERRORS);
        assert_eq!(p.errors.last().unwrap().line, MAX_ERRORS as u64);
    }
}
