//! Spool records: the frame a worker fsyncs before its `202`, and the
//! drainer's decoding of a run of them into one `COPY` plus its billed
//! counters, so that no step in Python works per record or per row.
//!
//! Layout (little-endian), unchanged since the first spool:
//!
//! ```text
//! b"EB" | u32 payload length | u32 CRC-32 of payload | payload
//! payload = i64 project_id | i64 received_at_us | u32 event count
//!           | u32 ids length | ids (JSON list of string|null, or empty) | COPY rows
//! ```
//!
//! A torn or corrupt record (crash mid-write, bit rot) fails its length or
//! checksum; decoding keeps every complete record before it.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use crate::ingest::json::{self, JsonLimits, Node};
use crate::ingest::lines::write_id_row;
use crate::ingest::EVENT_COLUMNS;

pub const MAGIC: &[u8; 2] = b"EB";
/// What a preallocated, never written part of a segment reads as.
const PADDING: &[u8; 2] = b"\0\0";
const FRAME: usize = 10;
const HEADER: usize = 24;
const US_PER_DAY: i64 = 86_400_000_000;

/// The spool record of one accepted request.
pub fn encode_record(
    project_id: i64,
    received_at_us: i64,
    count: usize,
    event_ids: &[Option<String>],
    rows: &[u8],
) -> Vec<u8> {
    let mut ids = Vec::new();
    if event_ids.iter().any(Option::is_some) {
        ids.push(b'[');
        for (n, id) in event_ids.iter().enumerate() {
            if n > 0 {
                ids.push(b',');
            }
            match id {
                Some(id) => write_json_string(&mut ids, id),
                None => ids.extend_from_slice(b"null"),
            }
        }
        ids.push(b']');
    }
    let payload_len = HEADER + ids.len() + rows.len();
    let mut record = Vec::with_capacity(FRAME + payload_len);
    record.extend_from_slice(MAGIC);
    record.extend_from_slice(&(payload_len as u32).to_le_bytes());
    record.extend_from_slice(&[0; 4]); // the checksum, once the payload is there
    record.extend_from_slice(&project_id.to_le_bytes());
    record.extend_from_slice(&received_at_us.to_le_bytes());
    record.extend_from_slice(&(count as u32).to_le_bytes());
    record.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    record.extend_from_slice(&ids);
    record.extend_from_slice(rows);
    let crc = crc32fast::hash(&record[FRAME..]);
    record[6..FRAME].copy_from_slice(&crc.to_le_bytes());
    record
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// One decoded record: where its rows are, and whom they belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordInfo {
    pub project_id: i64,
    pub received_at_us: i64,
    pub count: usize,
    /// Its rows within the decoded data.
    pub rows: Range<usize>,
    /// Each event's id, when any event of the request had one.
    pub event_ids: Option<Vec<Option<String>>>,
}

/// Why decoding stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The data ended exactly after a record (or was empty).
    End,
    /// The zero-filled, never written rest of a segment.
    Padding,
    /// A record runs past the data: the caller reads more, or it is a torn
    /// tail. `needed` is its whole size (0: even its frame is cut).
    Incomplete { needed: usize },
    /// A bad record header or checksum: nothing after it can be framed.
    Corrupt(String),
}

/// The complete records at the start of `data` (read at byte `start` of
/// spool segment `segment`), the bytes they span, and why decoding stopped.
pub fn decode(data: &[u8], segment: i64, start: u64) -> (Vec<RecordInfo>, usize, Stop) {
    let mut records = Vec::new();
    let mut pos = 0;
    let stop = loop {
        if pos + FRAME > data.len() {
            break if pos == data.len() {
                Stop::End
            } else if data[pos..].starts_with(PADDING) {
                Stop::Padding
            } else {
                Stop::Incomplete { needed: 0 }
            };
        }
        let frame = &data[pos..pos + FRAME];
        if frame.starts_with(PADDING) {
            break Stop::Padding;
        }
        let at = start + pos as u64;
        if &frame[..2] != MAGIC {
            break Stop::Corrupt(format!("segment {segment} offset {at}: bad record header"));
        }
        let length = u32::from_le_bytes([frame[2], frame[3], frame[4], frame[5]]) as usize;
        let crc = u32::from_le_bytes([frame[6], frame[7], frame[8], frame[9]]);
        let end = pos + FRAME + length;
        if end > data.len() {
            break Stop::Incomplete {
                needed: FRAME + length,
            };
        }
        let payload = &data[pos + FRAME..end];
        if length < HEADER || crc32fast::hash(payload) != crc {
            break Stop::Corrupt(format!("segment {segment} offset {at}: checksum mismatch"));
        }
        let int = |r: Range<usize>| -> [u8; 8] { payload[r].try_into().unwrap_or_default() };
        let word = |r: Range<usize>| -> [u8; 4] { payload[r].try_into().unwrap_or_default() };
        let ids_len = u32::from_le_bytes(word(20..24)) as usize;
        if HEADER + ids_len > length {
            break Stop::Corrupt(format!("segment {segment} offset {at}: bad id list"));
        }
        let event_ids = match parse_ids(&payload[HEADER..HEADER + ids_len]) {
            Ok(ids) => ids,
            Err(()) => break Stop::Corrupt(format!("segment {segment} offset {at}: bad id list")),
        };
        let rows_start = pos + FRAME + HEADER + ids_len;
        records.push(RecordInfo {
            project_id: i64::from_le_bytes(int(0..8)),
            received_at_us: i64::from_le_bytes(int(8..16)),
            count: u32::from_le_bytes(word(16..20)) as usize,
            rows: rows_start..end,
            event_ids,
        });
        pos = end;
    };
    (records, pos, stop)
}

fn parse_ids(ids: &[u8]) -> Result<Option<Vec<Option<String>>>, ()> {
    if ids.is_empty() {
        return Ok(None);
    }
    let limits = JsonLimits {
        max_depth: 2,
        max_string_bytes: usize::MAX,
    };
    let doc = json::parse(ids, limits).map_err(|_| ())?;
    if !matches!(doc.node(json::Document::ROOT), Node::Array { .. }) {
        return Err(());
    }
    doc.elements(json::Document::ROOT)
        .map(|e| match doc.node(e) {
            Node::Null => Ok(None),
            Node::Str { .. } => Ok(Some(doc.str(e).to_owned())),
            _ => Err(()),
        })
        .collect::<Result<Vec<_>, ()>>()
        .map(Some)
}

/// What a batch adds to one (project, UTC day of receipt) billed counter.
#[derive(Clone, Debug, PartialEq)]
pub struct Counter {
    pub project_id: i64,
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub events: u64,
    /// Receipt to `now_us` (about the commit), summed over the events, and the longest.
    pub latency_ms_sum: f64,
    pub latency_ms_max: f64,
}

/// Every (project, event id) of the records, in order.
pub fn event_ids(records: &[RecordInfo]) -> Vec<(i64, String)> {
    records
        .iter()
        .flat_map(|r| {
            r.event_ids
                .iter()
                .flatten()
                .flatten()
                .map(move |id| (r.project_id, id.clone()))
        })
        .collect()
}

/// Every (project, event id) of the records as `COPY event_ids (project_id,
/// event_id)` text rows: claiming them all with one COPY is the common case.
pub fn id_rows(records: &[RecordInfo]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        for id in record.event_ids.iter().flatten().flatten() {
            write_id_row(&mut out, record.project_id, id);
        }
    }
    out
}

/// The rows to COPY and their counters. With `claimed`, an event whose id is
/// not in it (stored already: a retry) is left out, and an id is stored by its
/// first occurrence only; events without an id are always kept.
pub fn select(
    data: &[u8],
    records: &[RecordInfo],
    mut claimed: Option<HashSet<(i64, String)>>,
    now_us: i64,
) -> (Vec<u8>, Vec<Counter>) {
    let mut rows = Vec::with_capacity(records.iter().map(|r| r.rows.len()).sum());
    let mut counters: Vec<Counter> = Vec::new();
    let mut index: HashMap<(i64, i64), usize> = HashMap::new();
    for record in records {
        let all = &data[record.rows.clone()];
        let first_layout = has_first_layout(all);
        let stored = match (&mut claimed, &record.event_ids) {
            (Some(claimed), Some(ids)) => {
                let mut kept = 0;
                // COPY text escapes newlines inside values: one row per line.
                for (row, id) in all.split_inclusive(|&b| b == b'\n').zip(ids) {
                    let keep = match id {
                        None => true,
                        Some(id) => claimed.remove(&(record.project_id, id.clone())),
                    };
                    if keep {
                        push_rows(&mut rows, row, first_layout);
                        kept += 1;
                    }
                }
                kept
            }
            _ => {
                push_rows(&mut rows, all, first_layout);
                record.count
            }
        };
        if stored == 0 {
            continue;
        }
        let day = record.received_at_us.div_euclid(US_PER_DAY);
        let slot = *index.entry((record.project_id, day)).or_insert_with(|| {
            counters.push(Counter {
                project_id: record.project_id,
                day,
                events: 0,
                latency_ms_sum: 0.0,
                latency_ms_max: 0.0,
            });
            counters.len() - 1
        });
        let latency_ms = ((now_us - record.received_at_us) as f64 / 1000.0).max(0.0);
        let counter = &mut counters[slot];
        counter.events += stored as u64;
        counter.latency_ms_sum += latency_ms * stored as f64;
        counter.latency_ms_max = counter.latency_ms_max.max(latency_ms);
    }
    (rows, counters)
}

/// Columns of the rows in the records of the first spool layout, written
/// before `distinct_id` (the last column) existed: a spool left by an older
/// version is stored after an upgrade, its events with no distinct_id.
const FIRST_LAYOUT_COLUMNS: usize = EVENT_COLUMNS.len() - 1;

/// Whether a record's rows have the first layout (its first row tells).
fn has_first_layout(rows: &[u8]) -> bool {
    let first = rows.split(|&b| b == b'\n').next().unwrap_or_default();
    first.iter().filter(|&&b| b == b'\t').count() + 1 == FIRST_LAYOUT_COLUMNS
}

/// Append `rows` (whole lines), each given a null `distinct_id` when they
/// have the first layout.
fn push_rows(out: &mut Vec<u8>, rows: &[u8], first_layout: bool) {
    if !first_layout {
        out.extend_from_slice(rows);
        return;
    }
    for row in rows.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(row.strip_suffix(b"\n").unwrap_or(row));
        out.extend_from_slice(b"\t\\N\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[Option<&str>]) -> Vec<Option<String>> {
        list.iter().map(|i| i.map(str::to_owned)).collect()
    }

    #[test]
    fn a_record_decodes_to_what_was_encoded() {
        let event_ids = ids(&[Some("a\"b\\c\u{1}é"), None]);
        let record = encode_record(7, 1_700_000_000_000_000, 2, &event_ids, b"r1\nr2\n");
        let (records, used, stop) = decode(&record, 1, 0);
        assert_eq!(used, record.len());
        assert_eq!(stop, Stop::End);
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(
            (r.project_id, r.received_at_us, r.count),
            (7, 1_700_000_000_000_000, 2)
        );
        assert_eq!(&record[r.rows.clone()], b"r1\nr2\n");
        assert_eq!(r.event_ids, Some(event_ids));
    }

    #[test]
    fn no_ids_are_stored_when_no_event_has_one() {
        let record = encode_record(1, 5, 1, &ids(&[None]), b"r\n");
        let (records, _, _) = decode(&record, 1, 0);
        assert_eq!(records[0].event_ids, None);
        assert_eq!(record.len(), FRAME + HEADER + 2);
    }

    #[test]
    fn decoding_stops_at_padding_a_torn_tail_and_damage() {
        let one = encode_record(1, 5, 1, &ids(&[None]), b"row\n");
        let mut data = [one.clone(), one.clone()].concat();
        data.extend_from_slice(&[0; 64]);
        let (records, used, stop) = decode(&data, 1, 0);
        assert_eq!(
            (records.len(), used, stop),
            (2, 2 * one.len(), Stop::Padding)
        );

        let torn = &data[..one.len() + 12];
        let (records, used, stop) = decode(torn, 1, 0);
        assert_eq!((records.len(), used), (1, one.len()));
        assert_eq!(stop, Stop::Incomplete { needed: one.len() });

        let mut flipped = data.clone();
        flipped[one.len() + FRAME + 3] ^= 0x10;
        let (records, _, stop) = decode(&flipped, 3, 100);
        assert_eq!(records.len(), 1);
        let at = 100 + one.len();
        assert_eq!(
            stop,
            Stop::Corrupt(format!("segment 3 offset {at}: checksum mismatch"))
        );
    }

    #[test]
    fn select_keeps_claimed_first_occurrences_and_counts_by_project_and_day() {
        let day = US_PER_DAY * 20_000;
        let a = encode_record(1, day + 1_000, 2, &ids(&[Some("x"), None]), b"x\nn\n");
        let b = encode_record(1, day + 3_000, 2, &ids(&[Some("x"), Some("y")]), b"x2\ny\n");
        let c = encode_record(2, day - 1, 1, &ids(&[None]), b"p2\n");
        let data = [a, b, c].concat();
        let (records, _, _) = decode(&data, 1, 0);
        assert_eq!(event_ids(&records).len(), 3);
        assert_eq!(id_rows(&records), b"1\tx\n1\tx\n1\ty\n");
        let claimed: HashSet<(i64, String)> = [(1, "x".to_owned()), (1, "y".to_owned())].into();
        let (rows, counters) = select(&data, &records, Some(claimed), day + 5_000);
        assert_eq!(rows, b"x\nn\ny\np2\n");
        assert_eq!(counters.len(), 2);
        assert_eq!(
            (counters[0].project_id, counters[0].day, counters[0].events),
            (1, 20_000, 3)
        );
        // 4 ms for the first record's two events, 2 ms for the one kept of the second.
        assert!((counters[0].latency_ms_sum - 10.0).abs() < 1e-9);
        assert!((counters[0].latency_ms_max - 4.0).abs() < 1e-9);
        assert_eq!((counters[1].project_id, counters[1].day), (2, 19_999));

        let (all, counters) = select(&data, &records, None, day);
        assert_eq!(all, b"x\nn\nx2\ny\np2\n");
        assert_eq!(counters.iter().map(|c| c.events).sum::<u64>(), 5);
    }

    #[test]
    fn rows_of_the_first_layout_get_a_null_distinct_id() {
        let old_row = |v: &str| vec![v; FIRST_LAYOUT_COLUMNS].join("\t") + "\n";
        let old = [old_row("a"), old_row("b")].concat();
        let new = vec!["c"; EVENT_COLUMNS.len()].join("\t") + "\n";
        let data = [
            encode_record(1, 5, 2, &ids(&[None, Some("i")]), old.as_bytes()),
            encode_record(1, 5, 1, &ids(&[None]), new.as_bytes()),
        ]
        .concat();
        let (records, _, _) = decode(&data, 1, 0);
        let upgraded = [
            old_row("a").replace('\n', "\t\\N\n"),
            old_row("b").replace('\n', "\t\\N\n"),
        ]
        .concat();
        let (rows, _) = select(&data, &records, None, 5);
        assert_eq!(String::from_utf8(rows).unwrap(), upgraded.clone() + &new);
        let claimed: HashSet<(i64, String)> = [(1, "i".to_owned())].into();
        let (rows, _) = select(&data, &records, Some(claimed), 5);
        assert_eq!(String::from_utf8(rows).unwrap(), upgraded + &new);
        for row in String::from_utf8(select(&data, &records, None, 5).0)
            .unwrap()
            .lines()
        {
            assert_eq!(row.split('\t').count(), EVENT_COLUMNS.len());
        }
    }
}
