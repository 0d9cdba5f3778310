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

use std::collections::HashMap;

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

#[derive(Debug, Clone, Copy)]
struct Totals {
    events: u64,
    metric_count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

fn column(name: &str) -> usize {
    EVENT_COLUMNS
        .iter()
        .position(|c| *c == name)
        .expect("rollup column is an event column")
}

/// The rollup groups of `rows` (COPY text in `EVENT_COLUMNS` order) as COPY
/// text: minute, the [`KEY_COLUMNS`], events, metric count, sum, min, max.
/// Groups come out sorted by key so that concurrent upserts lock rows in
/// one order. Rows that are not ours (wrong column count) are an error.
pub fn aggregate(rows: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let ts = column("timestamp");
    let value = column("metric_value");
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
        });
        t.events += 1;
        if let Some(v) = metric {
            t.metric_count += 1;
            t.sum += v;
            t.min = t.min.min(v);
            t.max = t.max.max(v);
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
            "2026-01-02 03:04:00+00\t1\tbuy\tprice\t\\N\tUS\t\\N\t\\N\t2\t2\t1.5\t-1.0\t2.5"
        );
        assert_eq!(
            lines[1],
            "2026-01-02 03:04:00+00\t1\tview\t\\N\t\\N\tFR\t\\N\t\\N\t2\t0\t\\N\t\\N\t\\N"
        );
        assert!(lines[2].starts_with("2026-01-02 03:04:00+00\t1\tview\t\\N\t\\N\tUS\t"));
        assert!(lines[3].starts_with("2026-01-02 03:05:00+00\t1\tview\t"));
    }

    #[test]
    fn refuses_foreign_rows() {
        assert!(aggregate(b"a\tb\n").is_err());
        assert_eq!(aggregate(b"").unwrap().1, 0);
    }
}
