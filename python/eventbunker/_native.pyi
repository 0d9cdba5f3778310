"""Typed face of the Rust extension (rust/src/python.rs, rust/src/ingest/).

The ingest hot path: a request body in, rows for
``COPY events (<EVENT_COLUMNS>) FROM STDIN`` (text format) out.
"""

from typing import final

__all__ = ["EVENT_COLUMNS", "IngestError", "Limits", "Prepared", "prepare_events"]

EVENT_COLUMNS: tuple[str, ...]
"""Column order of ``Prepared.rows``."""

class IngestError(Exception):
    """A refused request; ``args == (status, code, message, details)``.

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

@final
class Prepared:
    """Rows ready for COPY."""

    @property
    def rows(self) -> bytes:
        """COPY text rows, ``\\n``-terminated, one per event, in batch order."""
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
) -> Prepared:
    """Parse, validate and encode one ``POST /v1/events`` body.

    The GIL is released while it works. ``gzip``: the request had
    ``Content-Encoding: gzip``. ``received_at_us``: receive time in
    microseconds since the Unix epoch (UTC), between 1970 and 9999 (else
    ``ValueError``). ``customer_identifier``: the write key's, which the body
    cannot override. ``peer_ip``: the client address (an unparsable one is
    ignored); ``user_agent`` and ``referer``: the request's headers, used
    when the body has no ``user_agent`` / ``referrer``.

    Raises ``IngestError`` for anything the client must fix; a batch is all
    or nothing.
    """
