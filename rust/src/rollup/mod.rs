//! Per-batch rollup groups from encoded event rows.
//!
//! The drainer and the import job hold a batch as `COPY events FROM STDIN`
//! text ([`crate::ingest::copy`]). [`aggregate`] reads those rows once and
//! folds them into one group per (project, event name, metric name, UTC
//! minute, rollup dimensions), written again as COPY text for the
//! `rollup_batch` staging table. PostgreSQL then gets one small COPY and
//! per-level upserts instead of per-event work.
//!
//! Values are compared as their COPY text: our encoder escapes
//! deterministically, so equal values have equal text.
//!
//! Each group also carries what the sketches of migration 0016 are built
//! from: its distinct `distinct_id` values hashed as the `hll` extension's
//! `hll_hash_text` hashes text (MurmurHash3 x64 128, seed 0, first 64 bits;
//! `tests/test_sketches.py` checks both agree), and its metric values, for
//! `tdigest_add`. Hashing here spares PostgreSQL a per-event hash call and
//! sends each distinct id of a minute group once.

use std::collections::{BTreeSet, HashMap};

use crate::ingest::copy::{write_f64, NULL, SEP};
use crate::ingest::EVENT_COLUMNS;

/// The columns that key a group, in `rollup_batch` order (after the minute).
pub const KEY_COLUMNS: [&str; 7] = [
    "project_id",
    "event_name",
    "metric_name",
    "customer_identifier",
    "geo_country",
    "ua_device_type",
    "utm_source",
];

/// Length of `YYYY-MM-DD HH:MM` in our `timestamptz` text.
const MINUTE_PREFIX: usize = 16;

#[derive(Debug, Clone)]
struct Totals {
    events: u64,
    metric_count: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// `hll_hash_text` of each distinct `distinct_id`, ordered (as PostgreSQL
    /// orders `bigint`) so that the output is deterministic.
    distinct_ids: BTreeSet<i64>,
    /// The metric values as their COPY text (a valid `float8` literal).
    metric_values: Vec<u8>,
}

/// `hll_hash_text(value)` of the `hll` extension: the first 64 bits of
/// MurmurHash3 x64 128 (seed 0) of the text's bytes.
pub fn hll_hash(text: &[u8]) -> i64 {
    let mut reader = text;
    let hash = murmur3::murmur3_x64_128(&mut reader, 0).expect("reading a slice cannot fail");
    hash as u64 as i64
}

/// A COPY text value as the text it stands for (our encoder escapes only
/// backslash, LF, CR and TAB).
fn unescape(value: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !value.contains(&b'\\') {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(&other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Append `{a,b,...}` (a PostgreSQL array literal), or `\N` for no items.
fn write_array<I: Iterator<Item = T>, T: AsRef<[u8]>>(out: &mut Vec<u8>, items: I) {
    let start = out.len();
    for item in items {
        out.push(if out.len() == start { b'{' } else { b',' });
        out.extend_from_slice(item.as_ref());
    }
    if out.len() == start {
        out.extend_from_slice(NULL);
    } else {
        out.push(b'}');
    }
}

fn column(name: &str) -> usize {
    EVENT_COLUMNS
        .iter()
        .position(|c| *c == name)
        .expect("rollup column is an event column")
}

/// The rollup groups of `rows` (COPY text in `EVENT_COLUMNS` order) as COPY
/// text: minute, the [`KEY_COLUMNS`], events, metric count, sum, min, max,
/// the distinct ids' hashes (`bigint[]`) and the metric values (`float8[]`).
/// Groups come out sorted by key so that concurrent upserts lock rows in
/// one order. Rows that are not ours (wrong column count) are an error.
pub fn aggregate(rows: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let ts = column("timestamp");
    let value = column("metric_value");
    let distinct_id = column("distinct_id");
    let keys: Vec<usize> = KEY_COLUMNS.iter().map(|c| column(c)).collect();
    let mut groups: HashMap<Vec<u8>, Totals> = HashMap::new();
    let mut fields: Vec<&[u8]> = Vec::with_capacity(EVENT_COLUMNS.len());
    for line in rows.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        fields.clear();
        fields.extend(line.split(|&b| b == SEP));
        if fields.len() != EVENT_COLUMNS.len() {
            return Err(format!(
                "a row has {} columns, expected {}",
                fields.len(),
                EVENT_COLUMNS.len()
            ));
        }
        let stamp = fields[ts];
        if stamp.len() < MINUTE_PREFIX {
            return Err("a row's timestamp is not ours".into());
        }
        let mut key = Vec::with_capacity(96);
        key.extend_from_slice(&stamp[..MINUTE_PREFIX]);
        for &k in &keys {
            key.push(SEP);
            key.extend_from_slice(fields[k]);
        }
        let metric = match fields[value] {
            v if v == NULL => None,
            v => Some(
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                    .ok_or("a row's metric_value is not a number")?,
            ),
        };
        let t = groups.entry(key).or_insert(Totals {
            events: 0,
            metric_count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            distinct_ids: BTreeSet::new(),
            metric_values: Vec::new(),
        });
        t.events += 1;
        if let Some(v) = metric {
            t.metric_count += 1;
            t.sum += v;
            t.min = t.min.min(v);
            t.max = t.max.max(v);
            if !t.metric_values.is_empty() {
                t.metric_values.push(b',');
            }
            t.metric_values.extend_from_slice(fields[value]);
        }
        if fields[distinct_id] != NULL {
            t.distinct_ids.insert(hll_hash(&unescape(fields[distinct_id])));
        }
    }
    let mut sorted: Vec<_> = groups.into_iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(sorted.len() * 128);
    for (key, t) in &sorted {
        out.extend_from_slice(&key[..MINUTE_PREFIX]);
        out.extend_from_slice(b":00+00");
        out.extend_from_slice(&key[MINUTE_PREFIX..]);
        for n in [t.events, t.metric_count] {
            out.push(SEP);
            out.extend_from_slice(n.to_string().as_bytes());
        }
        for v in [t.sum, t.min, t.max] {
            out.push(SEP);
            if t.metric_count == 0 {
                out.extend_from_slice(NULL);
            } else {
                write_f64(&mut out, v);
            }
        }
        out.push(SEP);
        write_array(&mut out, t.distinct_ids.iter().map(|h| h.to_string()));
        out.push(SEP);
        if t.metric_values.is_empty() {
            out.extend_from_slice(NULL);
        } else {
            out.push(b'{');
            out.extend_from_slice(&t.metric_values);
            out.push(b'}');
        }
        out.push(b'\n');
    }
    Ok((out, sorted.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        ts: &str,
        project: &str,
        name: &str,
        metric: Option<(&str, &str)>,
        country: &str,
    ) -> String {
        let mut cols = vec!["\\N".to_string(); EVENT_COLUMNS.len()];
        cols[column("timestamp")] = ts.into();
        cols[column("project_id")] = project.into();
        cols[column("event_name")] = name.into();
        cols[column("geo_country")] = country.into();
        if let Some((m, v)) = metric {
            cols[column("metric_name")] = m.into();
            cols[column("metric_value")] = v.into();
        }
        cols.join("\t") + "\n"
    }

    #[test]
    fn groups_by_minute_and_dimensions() {
        let rows = [
            row("2026-01-02 03:04:05.000001+00", "1", "view", None, "FR"),
            row("2026-01-02 03:04:59.999999+00", "1", "view", None, "FR"),
            row("2026-01-02 03:05:00.000000+00", "1", "view", None, "FR"),
            row("2026-01-02 03:04:10.000000+00", "1", "view", None, "US"),
            row(
                "2026-01-02 03:04:10.000000+00",
                "1",
                "buy",
                Some(("price", "2.5")),
                "US",
            ),
            row(
                "2026-01-02 03:04:11.000000+00",
                "1",
                "buy",
                Some(("price", "-1")),
                "US",
            ),
        ]
        .concat();
        let (out, n) = aggregate(rows.as_bytes()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(n, 4);
        assert_eq!(
            lines[0],
            "2026-01-02 03:04:00+00\t1\tbuy\tprice\t\\N\tUS\t\\N\t\\N\t2\t2\t1.5\t-1.0\t2.5\t\\N\t{2.5,-1}"
        );
        assert_eq!(
            lines[1],
            "2026-01-02 03:04:00+00\t1\tview\t\\N\t\\N\tFR\t\\N\t\\N\t2\t0\t\\N\t\\N\t\\N\t\\N\t\\N"
        );
        assert!(lines[2].starts_with("2026-01-02 03:04:00+00\t1\tview\t\\N\t\\N\tUS\t"));
        assert!(lines[3].starts_with("2026-01-02 03:05:00+00\t1\tview\t"));
    }

    #[test]
    fn hashes_distinct_ids_as_hll_hash_text() {
        // Values of `SELECT hll_hash_text(...)` (postgresql-hll 2.17).
        assert_eq!(hll_hash(b"hello"), -3758069500696749310);
        assert_eq!(hll_hash(b""), 0);
        assert_eq!(hll_hash("\u{e9}".as_bytes()), -3956277427552623640);
        let mut cols = vec!["\\N".to_string(); EVENT_COLUMNS.len()];
        cols[column("timestamp")] = "2026-01-02 03:04:05+00".into();
        cols[column("project_id")] = "1".into();
        cols[column("event_name")] = "view".into();
        let mut rows = String::new();
        for id in ["hello", "a\\tb", "hello"] {
            cols[column("distinct_id")] = id.into();
            rows += &(cols.join("\t") + "\n");
        }
        let (out, n) = aggregate(rows.as_bytes()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut hashes = [hll_hash(b"hello"), hll_hash(b"a\tb")];
        hashes.sort_unstable();
        assert_eq!(n, 1);
        assert!(
            text.ends_with(&format!("\t{{{},{}}}\t\\N\n", hashes[0], hashes[1])),
            "{text}"
        );
    }

    #[test]
    fn refuses_foreign_rows() {
        assert!(aggregate(b"a\tb\n").is_err());
        assert_eq!(aggregate(b"").unwrap().1, 0);
    }
}
