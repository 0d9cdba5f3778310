//! The PyO3 module `eventbunker._native` (feature `python`): a thin face over
//! [`crate::ingest`] and [`crate::enrich`]. One call per request; the GIL is
//! released while Rust parses, checks, enriches and encodes. Typed in
//! `python/eventbunker/_native.pyi`.

use std::borrow::Cow;
use std::collections::HashSet;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::compat::{self, Format};
use crate::enrich::cache::CacheStats;
use crate::enrich::{Enricher, EnricherConfig, TrustedProxies};
use crate::ingest::{self, timestamp, IngestError, Limits, Request};
use crate::rollup;
use crate::spool::{self, RecordInfo, Stop};

mod exceptions {
    use pyo3::create_exception;
    use pyo3::exceptions::PyException;

    create_exception!(
        eventbunker._native,
        IngestError,
        PyException,
        "A refused ingest request: args (status, code, message, details), also as attributes."
    );
}

fn to_py_err(py: Python<'_>, e: IngestError) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let details = PyList::empty(py);
        for d in &e.details {
            let item = PyDict::new(py);
            item.set_item("index", d.index)?;
            item.set_item("field", d.field.as_deref())?;
            item.set_item("message", &d.message)?;
            details.append(item)?;
        }
        let value = py.get_type::<exceptions::IngestError>().call1((
            e.status(),
            e.code.as_str(),
            &e.message,
            &details,
        ))?;
        value.setattr("status", e.status())?;
        value.setattr("code", e.code.as_str())?;
        value.setattr("message", &e.message)?;
        value.setattr("details", details)?;
        Ok(PyErr::from_value(value))
    };
    build().unwrap_or_else(|failed| failed)
}

/// Request limits; immutable, built once per worker.
#[pyclass(frozen, module = "eventbunker._native", name = "Limits")]
pub struct PyLimits {
    inner: Limits,
}

fn positive(name: &str, v: i64) -> PyResult<usize> {
    usize::try_from(v)
        .ok()
        .filter(|&v| v >= 1)
        .ok_or_else(|| PyValueError::new_err(format!("{name} must be at least 1, got {v}")))
}

#[pymethods]
impl PyLimits {
    #[new]
    // Literal defaults (the same as `Limits::default()`, checked in a test)
    // so that they show in the Python signature.
    #[pyo3(signature = (
        *,
        max_body_bytes = 1048576,
        max_batch_events = 1000,
        max_depth = 32,
        max_string_bytes = 65536,
        max_future_seconds = 86400,
    ))]
    fn new(
        max_body_bytes: i64,
        max_batch_events: i64,
        max_depth: i64,
        max_string_bytes: i64,
        max_future_seconds: i64,
    ) -> PyResult<Self> {
        let inner = Limits::new(
            positive("max_body_bytes", max_body_bytes)?,
            positive("max_batch_events", max_batch_events)?,
            positive("max_depth", max_depth)?,
            positive("max_string_bytes", max_string_bytes)?,
        )
        .and_then(|l| l.with_max_future_secs(max_future_seconds))
        .map_err(PyValueError::new_err)?;
        Ok(PyLimits { inner })
    }

    #[getter]
    fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes()
    }

    #[getter]
    fn max_batch_events(&self) -> usize {
        self.inner.max_batch_events()
    }

    #[getter]
    fn max_depth(&self) -> usize {
        self.inner.max_depth()
    }

    #[getter]
    fn max_string_bytes(&self) -> usize {
        self.inner.max_string_bytes()
    }

    #[getter]
    fn max_future_seconds(&self) -> i64 {
        self.inner.max_future_us() / 1_000_000
    }

    fn __repr__(&self) -> String {
        let l = &self.inner;
        format!(
            "Limits(max_body_bytes={}, max_batch_events={}, max_depth={}, max_string_bytes={}, \
             max_future_seconds={})",
            l.max_body_bytes(),
            l.max_batch_events(),
            l.max_depth(),
            l.max_string_bytes(),
            l.max_future_us() / 1_000_000
        )
    }
}

/// Enrichment configuration and caches (GeoIP database, trusted proxies,
/// IP anonymisation); immutable, built once per worker.
#[pyclass(frozen, module = "eventbunker._native", name = "Enricher")]
pub struct PyEnricher {
    inner: Enricher,
}

fn non_negative(name: &str, v: i64) -> PyResult<usize> {
    usize::try_from(v)
        .map_err(|_| PyValueError::new_err(format!("{name} must be at least 0, got {v}")))
}

fn stats_dict<'py>(py: Python<'py>, s: CacheStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("entries", s.entries)?;
    d.set_item("capacity", s.capacity)?;
    d.set_item("hits", s.hits)?;
    d.set_item("misses", s.misses)?;
    Ok(d)
}

#[pymethods]
impl PyEnricher {
    #[new]
    #[pyo3(signature = (
        *,
        geoip_db = None,
        trusted_proxies = Vec::new(),
        anonymize_ip = false,
        ua_cache_size = 10000,
        geo_cache_size = 100000,
    ))]
    fn new(
        py: Python<'_>,
        geoip_db: Option<std::path::PathBuf>,
        trusted_proxies: Vec<String>,
        anonymize_ip: bool,
        ua_cache_size: i64,
        geo_cache_size: i64,
    ) -> PyResult<Self> {
        let config = EnricherConfig {
            geoip_db,
            trusted_proxies: TrustedProxies::parse(&trusted_proxies)
                .map_err(PyValueError::new_err)?,
            anonymize_ip,
            ua_cache_capacity: non_negative("ua_cache_size", ua_cache_size)?,
            geo_cache_capacity: non_negative("geo_cache_size", geo_cache_size)?,
            ..EnricherConfig::default()
        };
        // Mapping the database reads its metadata: off the GIL.
        let inner = py
            .allow_threads(|| Enricher::new(config))
            .map_err(PyValueError::new_err)?;
        Ok(PyEnricher { inner })
    }

    #[getter]
    fn geoip_db(&self) -> Option<String> {
        self.inner
            .geoip_db()
            .map(|p| p.to_string_lossy().into_owned())
    }

    #[getter]
    fn geoip_database_type(&self) -> Option<&str> {
        self.inner.geoip_database_type()
    }

    #[getter]
    fn geoip_build_epoch(&self) -> Option<u64> {
        self.inner.geoip_build_epoch()
    }

    #[getter]
    fn trusted_proxies(&self) -> Vec<String> {
        self.inner.trusted_proxies().cidrs()
    }

    #[getter]
    fn anonymize_ip(&self) -> bool {
        self.inner.anonymize_ip()
    }

    /// Whether `address` (a peer's IP; IPv4-mapped IPv6 counts as IPv4) is a
    /// trusted proxy: the one test of trust, for ingest and the web app alike.
    #[pyo3(signature = (address))]
    fn trusts(&self, address: Option<&str>) -> bool {
        address
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| self.inner.trusted_proxies().contains(ip))
    }

    /// `{"user_agents": {...}, "geo": {...}}`, each with `entries`,
    /// `capacity`, `hits` and `misses`.
    fn cache_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("user_agents", stats_dict(py, self.inner.ua_cache_stats())?)?;
        d.set_item("geo", stats_dict(py, self.inner.geo_cache_stats())?)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let db = match self.inner.geoip_db() {
            Some(p) => format!("{:?}", p.to_string_lossy()),
            None => "None".to_owned(),
        };
        let proxies: Vec<String> = self
            .inner
            .trusted_proxies()
            .cidrs()
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        let anonymize = if self.inner.anonymize_ip() {
            "True"
        } else {
            "False"
        };
        format!(
            "Enricher(geoip_db={db}, trusted_proxies=[{}], anonymize_ip={anonymize})",
            proxies.join(", ")
        )
    }
}

/// One request's events: its spool record, whose rows are ready for
/// `COPY events (<EVENT_COLUMNS>) FROM STDIN`.
#[pyclass(frozen, module = "eventbunker._native", name = "Prepared")]
pub struct PyPrepared {
    /// The spool record (frame, header, ids, rows): what the spool appends.
    #[pyo3(get)]
    record: Py<PyBytes>,
    rows_start: usize,
    #[pyo3(get)]
    count: usize,
    /// Each event's `event_id` or None, in batch order.
    #[pyo3(get)]
    event_ids: Py<PyList>,
}

#[pymethods]
impl PyPrepared {
    /// COPY text rows, each ending in `\n`, one per event (a copy out of the record).
    #[getter]
    fn rows<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.record.bind(py).as_bytes()[self.rows_start..])
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Prepared(count={}, rows=<{} bytes>)",
            self.count,
            self.record.bind(py).as_bytes().len() - self.rows_start
        )
    }
}

/// The given enricher, or the shared default one (no GeoIP, no proxies).
fn enricher_or_default<'a>(enricher: &'a Option<Bound<'_, PyEnricher>>) -> &'a Enricher {
    // A frozen pyclass is shared immutably: usable without the GIL.
    match enricher {
        Some(e) => &e.get().inner,
        None => Enricher::shared_default(),
    }
}

fn lossy<'a>(s: &'a Option<Bound<'_, PyString>>) -> Option<Cow<'a, str>> {
    // Lossy: a str holding lone surrogates must not fail the request.
    s.as_ref().map(|s| s.to_string_lossy())
}

/// Parse, validate, enrich and encode one request body; raises `IngestError`.
#[pyfunction]
#[pyo3(signature = (
    body,
    *,
    gzip,
    project_id,
    customer_identifier,
    received_at_us,
    peer_ip,
    user_agent,
    referer,
    limits,
    forwarded_for = None,
    enricher = None,
    format = None,
    call = None,
    form = false,
))]
#[allow(clippy::too_many_arguments)]
fn prepare_events(
    py: Python<'_>,
    body: &[u8],
    gzip: bool,
    project_id: i64,
    customer_identifier: Option<Bound<'_, PyString>>,
    received_at_us: i64,
    peer_ip: Option<Bound<'_, PyString>>,
    user_agent: Option<Bound<'_, PyString>>,
    referer: Option<Bound<'_, PyString>>,
    limits: PyRef<'_, PyLimits>,
    forwarded_for: Option<Bound<'_, PyString>>,
    enricher: Option<Bound<'_, PyEnricher>>,
    format: Option<&str>,
    call: Option<&str>,
    form: bool,
) -> PyResult<PyPrepared> {
    check_received_at(received_at_us)?;
    let format = format.map(format_of).transpose()?;
    let customer_identifier = lossy(&customer_identifier);
    let peer_ip = lossy(&peer_ip);
    let user_agent = lossy(&user_agent);
    let referer = lossy(&referer);
    let forwarded_for = lossy(&forwarded_for);
    let request = Request {
        gzip,
        project_id,
        customer_identifier: customer_identifier.as_deref(),
        received_at_us,
        peer_ip: peer_ip.as_deref(),
        forwarded_for: forwarded_for.as_deref(),
        user_agent: user_agent.as_deref(),
        referer: referer.as_deref(),
        historical: false,
    };
    let limits = limits.inner;
    let enricher = enricher_or_default(&enricher);
    let result = py.allow_threads(|| match format {
        None => ingest::prepare_events(body, &request, &limits, enricher),
        Some(format) => compat::prepare(body, form, format, call, &request, &limits, enricher),
    });
    match result {
        Ok(p) => {
            let record = py.allow_threads(|| {
                spool::encode_record(project_id, received_at_us, p.count, &p.event_ids, &p.rows)
            });
            Ok(PyPrepared {
                rows_start: record.len() - p.rows.len(),
                record: PyBytes::new(py, &record).unbind(),
                count: p.count,
                event_ids: PyList::new(py, p.event_ids)?.unbind(),
            })
        }
        Err(e) => Err(to_py_err(py, e)),
    }
}

fn format_of(name: &str) -> PyResult<Format> {
    Format::parse(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "format must be segment, posthog, mixpanel or amplitude, got {name:?}"
        ))
    })
}

/// An SDK's body decoded (gzip, `data=` forms) with the write key it
/// carries and its form fields.
#[pyclass(frozen, module = "eventbunker._native", name = "SdkBody")]
pub struct PySdkBody {
    /// The JSON text, for `prepare_events(..., format=...)`.
    #[pyo3(get)]
    json: Py<PyBytes>,
    #[pyo3(get)]
    key: Option<String>,
    #[pyo3(get)]
    verbose: Option<bool>,
    #[pyo3(get)]
    ip: Option<bool>,
    #[pyo3(get)]
    strict: Option<bool>,
    /// The format, resolved for `posthog-or-mixpanel`.
    #[pyo3(get)]
    format: &'static str,
}

/// Decode an SDK's body and find the write key in it (for SDKs that send
/// it there rather than in a header); raises `IngestError`.
#[pyfunction]
#[pyo3(signature = (body, *, format, gzip, form, limits))]
fn sdk_body(
    py: Python<'_>,
    body: &[u8],
    format: &str,
    gzip: bool,
    form: bool,
    limits: PyRef<'_, PyLimits>,
) -> PyResult<PySdkBody> {
    let given = match format {
        "posthog-or-mixpanel" => None,
        name => Some(format_of(name)?),
    };
    let limits = limits.inner;
    let result = py.allow_threads(|| {
        let decoded = compat::form::decode(body, gzip, form, limits.max_body_bytes())?;
        let format = match given {
            Some(f) => f,
            None => compat::sniff_posthog_or_mixpanel(&decoded.json, &limits)?,
        };
        let key = compat::body_key(&decoded.json, format, &limits).unwrap_or(None);
        Ok::<_, IngestError>((decoded, key, format))
    });
    match result {
        Ok((decoded, key, format)) => Ok(PySdkBody {
            format: format.name(),
            json: PyBytes::new(py, &decoded.json).unbind(),
            key,
            verbose: decoded.fields.verbose,
            ip: decoded.fields.ip,
            strict: decoded.fields.strict,
        }),
        Err(e) => Err(to_py_err(py, e)),
    }
}

/// The complete spool records at the start of some bytes read from a segment.
#[pyclass(frozen, module = "eventbunker._native", name = "SpoolBatch")]
pub struct PySpoolBatch {
    data: Py<PyBytes>,
    infos: Vec<RecordInfo>,
    used: usize,
    stop: Stop,
}

#[pymethods]
impl PySpoolBatch {
    /// How many complete records were decoded.
    #[getter]
    fn records(&self) -> usize {
        self.infos.len()
    }

    /// Their events, before any retried id is left out.
    #[getter]
    fn events(&self) -> usize {
        self.infos.iter().map(|r| r.count).sum()
    }

    /// Bytes of the data the records span (from its start).
    #[getter]
    fn end(&self) -> usize {
        self.used
    }

    /// Why decoding stopped: "end", "padding", "incomplete" or "corrupt".
    #[getter]
    fn stop(&self) -> &'static str {
        match self.stop {
            Stop::End => "end",
            Stop::Padding => "padding",
            Stop::Incomplete { .. } => "incomplete",
            Stop::Corrupt(_) => "corrupt",
        }
    }

    /// The whole size of an incomplete record after the last complete one (0: unknown).
    #[getter]
    fn needed(&self) -> usize {
        match self.stop {
            Stop::Incomplete { needed } => needed,
            _ => 0,
        }
    }

    /// What is wrong with the record after the last complete one, if it is corrupt.
    #[getter]
    fn damage(&self) -> Option<&str> {
        match &self.stop {
            Stop::Corrupt(message) => Some(message),
            _ => None,
        }
    }

    /// The earliest receipt time of the records (None without records).
    #[getter]
    fn min_received_at_us(&self) -> Option<i64> {
        self.infos.iter().map(|r| r.received_at_us).min()
    }

    /// Whether any event carries an `event_id` (then ids must be claimed).
    #[getter]
    fn has_event_ids(&self) -> bool {
        self.infos.iter().any(|r| r.event_ids.is_some())
    }

    /// Every (project_id, event_id) of the records, in order.
    fn event_ids(&self) -> Vec<(i64, String)> {
        spool::event_ids(&self.infos)
    }

    /// Every (project_id, event_id) as `COPY event_ids (project_id, event_id)` text rows.
    fn id_rows<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &spool::id_rows(&self.infos))
    }

    /// The rows to COPY and, per (project_id, day since 1970-01-01 UTC), the
    /// stored events with their receipt-to-`now_us` latency summed and maxed
    /// (milliseconds). With `claimed`, events whose id is not in it are left
    /// out, and each id is stored by its first occurrence.
    #[pyo3(signature = (claimed, now_us))]
    #[allow(clippy::type_complexity)]
    fn select<'py>(
        &self,
        py: Python<'py>,
        claimed: Option<HashSet<(i64, String)>>,
        now_us: i64,
    ) -> (Bound<'py, PyBytes>, Vec<(i64, i64, u64, f64, f64)>) {
        let data = self.data.bind(py).as_bytes();
        let (rows, counters) = spool::select(data, &self.infos, claimed, now_us);
        let counters = counters
            .into_iter()
            .map(|c| {
                (
                    c.project_id,
                    c.day,
                    c.events,
                    c.latency_ms_sum,
                    c.latency_ms_max,
                )
            })
            .collect();
        (PyBytes::new(py, &rows), counters)
    }

    fn __repr__(&self) -> String {
        format!(
            "SpoolBatch(records={}, end={}, stop={})",
            self.infos.len(),
            self.used,
            self.stop()
        )
    }
}

/// Decode the spool records at the start of `data`, read at byte `start` of
/// segment `segment` (for the damage message).
#[pyfunction]
fn decode_spool(data: Bound<'_, PyBytes>, segment: i64, start: u64) -> PySpoolBatch {
    let (infos, used, stop) = spool::decode(data.as_bytes(), segment, start);
    PySpoolBatch {
        data: data.unbind(),
        infos,
        used,
        stop,
    }
}

/// Valid lines of one import chunk as COPY rows, and the rejected ones.
#[pyclass(frozen, module = "eventbunker._native", name = "PreparedLines")]
pub struct PyPreparedLines {
    #[pyo3(get)]
    rows: Py<PyBytes>,
    #[pyo3(get)]
    count: usize,
    #[pyo3(get)]
    event_ids: Py<PyList>,
    /// COPY text rows `project_id<TAB>event_id` of the rows with an id.
    #[pyo3(get)]
    id_rows: Py<PyBytes>,
    #[pyo3(get)]
    lines: u64,
    #[pyo3(get)]
    rejected: u64,
    /// `{"line", "code", "field", "message"}` dicts, the first `max_errors`.
    #[pyo3(get)]
    errors: Py<PyList>,
    #[pyo3(get)]
    problems: u64,
    /// Invalid lines by the code of their first problem (codes with none left out).
    #[pyo3(get)]
    rejected_by_code: Py<PyDict>,
}

#[pymethods]
impl PyPreparedLines {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "PreparedLines(lines={}, count={}, rejected={}, rows=<{} bytes>)",
            self.lines,
            self.count,
            self.rejected,
            self.rows.bind(py).as_bytes().len()
        )
    }
}

/// Parse, validate, enrich and encode a chunk of NDJSON lines of an import;
/// each line stands alone (see `ingest::lines`).
#[pyfunction]
#[pyo3(signature = (
    chunk,
    *,
    first_line,
    project_id,
    customer_identifier,
    received_at_us,
    limits,
    enricher = None,
    // Literal (= ingest::lines::MAX_ERRORS) so that it shows in the Python signature.
    max_errors = 100,
))]
#[allow(clippy::too_many_arguments)]
fn prepare_lines(
    py: Python<'_>,
    chunk: &[u8],
    first_line: u64,
    project_id: i64,
    customer_identifier: Option<Bound<'_, PyString>>,
    received_at_us: i64,
    limits: PyRef<'_, PyLimits>,
    enricher: Option<Bound<'_, PyEnricher>>,
    max_errors: usize,
) -> PyResult<PyPreparedLines> {
    check_received_at(received_at_us)?;
    let customer_identifier = lossy(&customer_identifier);
    let request = Request {
        project_id,
        customer_identifier: customer_identifier.as_deref(),
        received_at_us,
        historical: true,
        ..Request::default()
    };
    let limits = limits.inner;
    let enricher = enricher_or_default(&enricher);
    let p = py.allow_threads(|| {
        ingest::lines::prepare_lines(chunk, first_line, &request, &limits, enricher, max_errors)
    });
    let errors = PyList::empty(py);
    for e in &p.errors {
        let item = PyDict::new(py);
        item.set_item("line", e.line)?;
        item.set_item("code", e.code.as_str())?;
        item.set_item("field", e.field.as_deref())?;
        item.set_item("message", &e.message)?;
        errors.append(item)?;
    }
    let rejected_by_code = PyDict::new(py);
    for (code, n) in ingest::ErrorCode::ALL.iter().zip(p.rejected_by_code) {
        if n > 0 {
            rejected_by_code.set_item(code.as_str(), n)?;
        }
    }
    Ok(PyPreparedLines {
        rejected_by_code: rejected_by_code.unbind(),
        rows: PyBytes::new(py, &p.rows).unbind(),
        count: p.count,
        event_ids: PyList::new(py, p.event_ids)?.unbind(),
        id_rows: PyBytes::new(py, &p.id_rows).unbind(),
        lines: p.lines,
        rejected: p.rejected,
        errors: errors.unbind(),
        problems: p.problems,
    })
}

/// The rollup groups of encoded event rows, as a JSON array of
/// per-minute rollup rows, and how many there are (see `crate::rollup`).
#[pyfunction]
fn rollup_groups<'py>(py: Python<'py>, rows: &[u8]) -> PyResult<(Bound<'py, PyBytes>, usize)> {
    let (out, n) = py
        .allow_threads(|| rollup::aggregate(rows))
        .map_err(PyValueError::new_err)?;
    Ok((PyBytes::new(py, &out), n))
}

fn check_received_at(received_at_us: i64) -> PyResult<()> {
    if timestamp::in_range(received_at_us) {
        return Ok(());
    }
    Err(PyValueError::new_err(format!(
        "received_at_us must be between 0 and {} (1970-01-01..9999-12-31), got {received_at_us}",
        timestamp::MAX_US
    )))
}

/// The project's one gzip inflater ([`ingest::body::Gunzip`]), for bodies
/// read in pieces (import bodies and files). One reader at a time uses it;
/// the mutex makes that safe to share.
#[pyclass(frozen, module = "eventbunker._native", name = "Gunzip")]
pub struct PyGunzip {
    inner: std::sync::Mutex<ingest::body::Gunzip>,
}

impl PyGunzip {
    fn inflater(&self) -> std::sync::MutexGuard<'_, ingest::body::Gunzip> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[pymethods]
impl PyGunzip {
    #[new]
    fn new() -> Self {
        PyGunzip {
            inner: std::sync::Mutex::new(ingest::body::Gunzip::new()),
        }
    }

    /// One bounded step over `data[start:]`: (the bytes inflated, how far it
    /// read). The GIL is released while it inflates.
    fn step<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        start: usize,
    ) -> PyResult<(Bound<'py, PyBytes>, usize)> {
        let mut out = Vec::new();
        let at = py
            .allow_threads(|| self.inflater().step(data, start.min(data.len()), &mut out))
            .map_err(PyValueError::new_err)?;
        Ok((PyBytes::new(py, &out), at))
    }

    /// The end of the body: what is left; ValueError when it was cut off.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::new();
        self.inflater()
            .finish(&mut out)
            .map_err(PyValueError::new_err)?;
        Ok(PyBytes::new(py, &out))
    }
}

/// The spool's fdatasyncs on Rust threads (`crate::syncer`).
#[pyclass(frozen, module = "eventbunker._native", name = "Syncer")]
pub struct PySyncer {
    inner: crate::syncer::Syncer,
}

#[pymethods]
impl PySyncer {
    #[new]
    #[pyo3(signature = (threads))]
    fn new(threads: usize) -> PyResult<Self> {
        Ok(Self {
            inner: crate::syncer::Syncer::new(threads)?,
        })
    }

    fn sync(&self, fd: i32, ticket: u64) {
        self.inner.sync(fd, ticket);
    }

    fn fileno(&self) -> i32 {
        self.inner.fileno()
    }

    fn finished(&self) -> Vec<(u64, i32)> {
        self.inner.finished()
    }
}

#[pymodule]
#[pyo3(name = "_native")]
fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("EVENT_COLUMNS", PyTuple::new(py, ingest::EVENT_COLUMNS)?)?;
    m.add("IngestError", py.get_type::<exceptions::IngestError>())?;
    m.add_class::<PyLimits>()?;
    m.add_class::<PyEnricher>()?;
    m.add_class::<PyPrepared>()?;
    m.add_class::<PyPreparedLines>()?;
    m.add_class::<PySpoolBatch>()?;
    m.add_class::<PyGunzip>()?;
    m.add_class::<PySyncer>()?;

    m.add_class::<PySdkBody>()?;
    m.add_function(wrap_pyfunction!(sdk_body, m)?)?;
    m.add_function(wrap_pyfunction!(prepare_events, m)?)?;
    m.add_function(wrap_pyfunction!(decode_spool, m)?)?;
    m.add_function(wrap_pyfunction!(prepare_lines, m)?)?;
    m.add_function(wrap_pyfunction!(rollup_groups, m)?)?;
    Ok(())
}
