"""Typed face of the Rust extension (rust/src/python.rs, rust/src/ingest/,
rust/src/enrich/).

The ingest hot path: a request body in, rows for
``COPY events (<EVENT_COLUMNS>) FROM STDIN`` (text format) out, enriched
(client address, GeoIP, user agent) on the way.
"""

import os
from typing import Literal, final

__all__ = [
    "EVENT_COLUMNS",
    "Enricher",
    "Gunzip",
    "IngestError",
    "Limits",
    "Prepared",
    "PreparedLines",
    "SdkBody",
    "SpoolBatch",
    "Syncer",
    "decode_spool",
    "prepare_events",
    "prepare_lines",
    "rollup_groups",
    "sdk_body",
]

EVENT_COLUMNS: tuple[str, ...]
"""Column order of ``Prepared.rows``."""

@final
class Gunzip:
    """The project's one gzip inflater (Rust ``ingest::body::Gunzip``): several
    members in a row, bounded steps (at most 4 MiB out each)."""

    def __init__(self) -> None: ...
    def step(self, data: bytes, start: int) -> tuple[bytes, int]:
        """One bounded step over ``data[start:]``: the bytes inflated and how far
        it read; ValueError on invalid gzip data."""
    def finish(self) -> bytes:
        """What is left at the body's end; ValueError when it was cut off."""

@final
class Syncer:
    """``fdatasync`` on ``threads`` Rust threads that never take the GIL
    (``rust/src/syncer.rs``): ``sync`` starts one and returns at once; when
    it ends, ``fileno()`` becomes readable and ``finished()`` gives it."""

    def __new__(cls, threads: int) -> Syncer: ...
    def sync(self, fd: int, ticket: int) -> None:
        """Start an fdatasync of ``fd`` (kept open until it finished)."""
    def fileno(self) -> int:
        """A socket that becomes readable when a sync finished."""
    def finished(self) -> list[tuple[int, int]]:
        """The syncs finished since the last call: ``(ticket, 0 or errno)``."""

class IngestError(Exception):
    """A refused request; ``args == (status, code, message, details)``, each
    also an attribute (set by the extension when it raises; a PyO3 exception type).

    ``status`` is 413 for ``body_too_large`` and 400 for every other code:
    ``invalid_gzip``, ``malformed_json``, ``too_deep``, ``string_too_long``,
    ``batch_too_large``, ``invalid_event``. ``details`` holds at most 100
    ``{"index": int | None, "field": str | None, "message": str}``: ``index``
    is the event's position in the batch (0 for a single object; None for a
    problem with the body as a whole), ``field`` the top-level field (None for
    the event itself).
    """

    status: int
    code: str
    message: str
    details: list[dict[str, object]]
    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, object]]
    ) -> None: ...

@final
class Limits:
    """Request limits; immutable, built once per worker.

    Each value must be at least 1; ``max_depth`` at most 256 and
    ``max_body_bytes`` below 4 GiB (else ``ValueError``).
    ``max_future_seconds`` (0 to ten years): an event timed further after its
    receipt is stored at its receipt, its sent time kept in ``properties``
    as ``future_timestamp``.
    """

    # The constructor is __new__ at runtime (a PyO3 class); typed as such so
    # that stubtest agrees. Called like any class: Limits(max_depth=16).
    def __new__(
        cls,
        *,
        max_body_bytes: int = 1_048_576,
        max_batch_events: int = 1000,
        max_depth: int = 32,
        max_string_bytes: int = 65_536,
        max_future_seconds: int = 86_400,
    ) -> Limits: ...
    @property
    def max_body_bytes(self) -> int:
        """Largest body after gzip decompression (bytes)."""
    @property
    def max_batch_events(self) -> int:
        """Most events in one batch (array)."""
    @property
    def max_depth(self) -> int:
        """Deepest nesting of JSON containers; the outermost one is level 1."""
    @property
    def max_string_bytes(self) -> int:
        """Longest JSON string (key or value), decoded, in UTF-8 bytes."""
    @property
    def max_future_seconds(self) -> int:
        """How far past its receipt an event's time is stored as given."""

@final
class Enricher:
    """Enrichment configuration and caches; immutable, built once per worker.

    ``geoip_db``: a MaxMind City (or Country) ``.mmdb``, memory-mapped; None:
    the ``geo_*`` columns are null. ``trusted_proxies``: addresses and CIDRs
    (each item may hold several, separated by commas or spaces) whose
    ``X-Forwarded-For`` is believed: the right-most address in it that is not
    a trusted proxy is the client. ``anonymize_ip``: store ``ip`` with the
    last IPv4 octet / the last 80 IPv6 bits zeroed (the GeoIP lookup uses the
    whole address). ``ua_cache_size`` / ``geo_cache_size``: most user agents /
    addresses cached (0: no caching).

    Raises ``ValueError`` for a malformed proxy entry, a negative size, or a
    GeoIP database that cannot be opened or holds no locations.
    """

    def __new__(
        cls,
        *,
        geoip_db: str | os.PathLike[str] | None = None,
        trusted_proxies: list[str] | tuple[str, ...] = ...,
        anonymize_ip: bool = False,
        ua_cache_size: int = 10000,
        geo_cache_size: int = 100000,
    ) -> Enricher: ...
    @property
    def geoip_db(self) -> str | None:
        """The GeoIP database's path, as given."""
    @property
    def geoip_database_type(self) -> str | None:
        """``GeoIP2-City``, ``GeoLite2-City``...; None without a database."""
    @property
    def geoip_build_epoch(self) -> int | None:
        """When the GeoIP database was built (seconds since the Unix epoch)."""
    @property
    def trusted_proxies(self) -> list[str]:
        """The trusted networks as CIDRs (``127.0.0.1/32``)."""
    @property
    def anonymize_ip(self) -> bool: ...
    def trusts(self, address: str | None) -> bool:
        """Whether ``address`` is a trusted proxy (IPv4-mapped IPv6 counts as IPv4);
        an unparsable or missing address is not."""
    def cache_stats(self) -> dict[str, dict[str, int]]:
        """``{"user_agents": s, "geo": s}``, each ``s`` holding ``entries``,
        ``capacity``, ``hits`` and ``misses``."""

@final
class Prepared:
    """One request's events as its spool record, whose rows are ready for COPY."""

    @property
    def record(self) -> bytes:
        """The spool record: frame, header, event ids and rows (what the spool appends)."""
    @property
    def rows(self) -> bytes:
        """COPY text rows, ``\\n``-terminated, one per event, in batch order (a copy)."""
    @property
    def count(self) -> int:
        """Number of events (and rows)."""
    @property
    def event_ids(self) -> list[str | None]:
        """Each event's ``event_id`` (None when it has none), in batch order."""

def prepare_events(
    body: bytes,
    *,
    gzip: bool,
    project_id: int,
    customer_identifier: str | None,
    received_at_us: int,
    peer_ip: str | None,
    user_agent: str | None,
    referer: str | None,
    limits: Limits,
    forwarded_for: str | None = None,
    enricher: Enricher | None = None,
    format: str | None = None,
    call: str | None = None,
    form: bool = False,
) -> Prepared:
    """Parse, validate, enrich and encode one ``POST /v1/events`` body.

    The GIL is released while it works. ``gzip``: the request had
    ``Content-Encoding: gzip``. ``received_at_us``: receive time in
    microseconds since the Unix epoch (UTC), between 1970 and 9999 (else
    ``ValueError``). ``customer_identifier``: the write key's, which the body
    cannot override. ``peer_ip``: the socket peer's address (an unparsable
    one is ignored); ``forwarded_for``: the ``X-Forwarded-For`` header
    (several lines joined with ``,``), believed only when the peer is one of
    the enricher's trusted proxies; ``user_agent`` and ``referer``: the
    request's headers, used when the body has no ``user_agent`` /
    ``referrer``. ``enricher``: None means no GeoIP, no trusted proxy, whole
    addresses (and a shared user-agent cache).

    ``format``: ``segment``, ``posthog``, ``mixpanel`` or ``amplitude`` maps
    that SDK's payload into our events (rust/src/compat/), ``None`` is our
    own; ``call`` is the single-message endpoint it came to (Segment's
    ``page``, Mixpanel's ``import``, the profile updates' ``engage`` and
    ``groups``); ``form``: the body is form-encoded (``data=``). Gzip is
    also recognised by its magic bytes for SDK formats.

    Raises ``IngestError`` for anything the client must fix; a batch is all
    or nothing.
    """

@final
class SpoolBatch:
    """The complete spool records at the start of some bytes of a segment."""

    @property
    def records(self) -> int:
        """How many complete records were decoded."""
    @property
    def events(self) -> int:
        """Their events, before any retried id is left out."""
    @property
    def end(self) -> int:
        """Bytes of the data the records span, from its start."""
    @property
    def stop(self) -> Literal["end", "padding", "incomplete", "corrupt"]:
        """Why decoding stopped."""
    @property
    def needed(self) -> int:
        """Whole size of the incomplete record after the last complete one (0: unknown)."""
    @property
    def damage(self) -> str | None:
        """What is wrong with the record after the last complete one, if it is corrupt."""
    @property
    def min_received_at_us(self) -> int | None:
        """Earliest receipt time of the records (None without records)."""
    @property
    def has_event_ids(self) -> bool:
        """Whether any event carries an ``event_id`` (then ids must be claimed)."""
    def event_ids(self) -> list[tuple[int, str]]:
        """Every ``(project_id, event_id)`` of the records, in order."""
    def id_rows(self) -> bytes:
        """Every ``(project_id, event_id)`` as ``COPY event_ids (project_id, event_id)`` rows."""
    def select(
        self, claimed: set[tuple[int, str]] | None, now_us: int
    ) -> tuple[bytes, list[tuple[int, int, int, float, float]]]:
        """The rows to COPY and, per ``(project_id, day since 1970-01-01 UTC)``, the
        stored events with their receipt-to-``now_us`` latency summed and maxed (ms).

        With ``claimed``, events whose id is not in it are left out, and each id
        is stored by its first occurrence."""

def decode_spool(data: bytes, segment: int, start: int) -> SpoolBatch:
    """Decode the spool records at the start of ``data``, read at byte ``start`` of
    segment ``segment`` (for the damage message)."""

@final
class SdkBody:
    """An SDK's body decoded, with the write key it carries."""

    @property
    def json(self) -> bytes:
        """The JSON text (pass it to ``prepare_events`` with ``gzip=False``)."""
    @property
    def key(self) -> str | None:
        """``writeKey``, ``api_key``, ``token``: the key in the body, if any."""
    @property
    def verbose(self) -> bool | None:
        """The form's ``verbose`` field (Mixpanel)."""
    @property
    def ip(self) -> bool | None:
        """The form's ``ip`` field (Mixpanel: 0 means do not use the peer's address)."""
    @property
    def strict(self) -> bool | None:
        """The form's ``strict`` field (Mixpanel's ``/import``)."""
    @property
    def format(self) -> str:
        """The payload's format (``posthog-or-mixpanel`` resolved by its shape)."""

def sdk_body(body: bytes, *, format: str, gzip: bool, form: bool, limits: Limits) -> SdkBody:
    """Gunzip / decode the ``data=`` form of an SDK's body and find its key.

    ``format`` may be ``posthog-or-mixpanel`` (the ``/track/`` path both use):
    resolved by the payload's shape.

    Raises ``IngestError`` (413 over the body limit, 400 otherwise).
    """

@final
class PreparedLines:
    """One chunk of an import: rows of the valid lines, and the rejected ones."""

    @property
    def rows(self) -> bytes:
        """COPY text rows of the valid lines, ``\\n``-terminated, in order."""
    @property
    def count(self) -> int:
        """Valid lines (rows)."""
    @property
    def event_ids(self) -> list[str | None]:
        """Each row's ``event_id`` (None when it has none), in order."""
    @property
    def id_rows(self) -> bytes:
        """COPY text rows ``project_id<TAB>event_id`` of the rows with an id, in order."""
    @property
    def lines(self) -> int:
        """Lines in the chunk, blank ones included."""
    @property
    def rejected(self) -> int:
        """Invalid lines."""
    @property
    def errors(self) -> list[dict[str, object]]:
        """The first problems: ``{"line", "code", "field", "message"}``; ``line``
        is the import's line number, ``code`` one of ``IngestError``'s."""
    @property
    def problems(self) -> int:
        """Problems found, including those past ``max_errors``."""
    @property
    def rejected_by_code(self) -> dict[str, int]:
        """Invalid lines by the code of their first problem (codes with none left out)."""

def prepare_lines(
    chunk: bytes,
    *,
    first_line: int,
    project_id: int,
    customer_identifier: str | None,
    received_at_us: int,
    limits: Limits,
    enricher: Enricher | None = None,
    max_errors: int = 100,
) -> PreparedLines:
    """Parse, validate, enrich and encode a chunk of NDJSON lines of an import.

    Lines end with ``\\n`` (a ``\\r`` before it is dropped); the chunk's last
    line may lack one. Blank lines are skipped but numbered; ``first_line`` is
    the import's number of the chunk's first line. Each line stands alone: an
    invalid one is counted and reported, the others are kept. A line longer
    than ``limits.max_body_bytes`` is refused as ``body_too_large``. No request
    address or header applies: imported events carry their own ``ip``,
    ``user_agent`` and ``referrer``; and they are historical: ``sent_at``
    corrects no clock skew (it was not sent now) and stands in for a missing
    ``timestamp``. The GIL is released while it works.
    """

def rollup_groups(rows: bytes) -> tuple[bytes, int]:
    """The rollup groups of encoded event rows, as a JSON array of objects
    named as the rollup tables' columns (bucket, project_id, event_name,
    metric_name, customer_identifier, geo_country, ua_device_type,
    utm_source, events, metric_count, metric_sum, metric_min, metric_max)
    plus ``distinct_hashes`` (hll_hash_text of each distinct distinct_id) and
    ``metric_values`` (null when empty), sorted by key; and how many there are."""
