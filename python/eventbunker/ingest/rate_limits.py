"""Rate limits: token buckets of events per second, one per write key (one per
customer for customer-scoped keys), shared by the workers of a node.

A bucket holds up to ``burst`` events and refills at ``events_per_second``.
A request is admitted when its bucket holds at least one event (checked before
its body is parsed, so a client over its limit costs little more than reading
its body) and then takes its events (a batch larger than the burst is admitted
into debt from a full bucket, else it could never pass); otherwise it is
answered 429 ``rate_limited`` with ``Retry-After``, the seconds until it would
pass.

The buckets live in one memory-mapped file in the server's runtime directory
(``rate-limits``), which every worker maps: 4,096 groups of 4 slots of 32
bytes (512 KiB). A bucket's slot is found in its group by its key's 64-bit
hash, under a ``lockf`` byte-range lock of that group only, so keys in other
groups never wait on it. Kept as own code rather than a library (Redis,
a database row) because those put a network or database round trip on every
request; a lock and a read-modify-write of 32 bytes take a few microseconds.
When a group is full of live buckets, the newcomer shares the fullest one
(at most 16,384 keys sending at once per node without sharing).

A project may have its own limit (``PUT /v1/projects/{id}/rate_limit``): the
key cache brings it with each key (ingest/auth.py), so it costs no query here;
each slot keeps the limit it was last taken under, to tell when it is full.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from eventbunker.errors import ErrorCode, Refusal
from eventbunker.ingest.auth import ApiKey

GROUPS = 4096
SLOTS_PER_GROUP = 4
# key hash (0: free), tokens, refilled at (monotonic s), the bucket's rate and burst
SLOT = struct.Struct("<Qddff")
GROUP_BYTES = SLOT.size * SLOTS_PER_GROUP
FILE_NAME = "rate-limits"


@dataclass(frozen=True, slots=True)
class RateLimit:
    events_per_second: float
    burst: float


class RateLimits:
    """The node's buckets; ``runtime_dir`` None: this process's own.

    ``default`` is the server's limit (None: none) for keys whose project has
    none of its own; a default burst of 0 is one second of the key's rate."""

    def __init__(self, default: RateLimit | None, runtime_dir: Path | None) -> None:
        if default is not None and (default.events_per_second <= 0 or default.burst < 0):
            raise ValueError("a rate limit needs events_per_second > 0 and a burst of at least 0")
        self._default = default
        size = GROUPS * GROUP_BYTES
        if runtime_dir is None:
            self._fd = os.memfd_create(FILE_NAME)
        else:
            self._fd = os.open(runtime_dir / FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)  # zero-filled: every slot free
        self._map = mmap.mmap(self._fd, size)

    def limit_of(self, key: ApiKey) -> RateLimit | None:
        """The key's limit: its project's, else the server's (None: unlimited)."""
        default = self._default
        rate = key.rate_limit_events_per_second
        if rate is None:
            if default is None:
                return None
            rate = default.events_per_second
        burst = key.rate_limit_burst
        if burst is None:
            burst = int(default.burst) if default is not None else 0
        return RateLimit(rate, float(burst) if burst else max(1.0, rate))

    def admit(self, key: ApiKey) -> None:
        """Refuse (429) unless the key's bucket holds at least one event."""
        self._take(key, 0)

    def take(self, key: ApiKey, events: int) -> None:
        """Take ``events`` from the key's bucket, or refuse (429) taking none."""
        self._take(key, events)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def _take(self, key: ApiKey, events: int) -> None:
        limit = self.limit_of(key)
        if limit is None:
            return
        rate, burst = limit.events_per_second, limit.burst
        digest = _bucket_hash(key)
        group = digest % GROUPS
        offset = group * GROUP_BYTES
        fcntl.lockf(self._fd, fcntl.LOCK_EX, GROUP_BYTES, offset)
        try:
            now = time.monotonic()
            at, tokens, refilled = self._slot(digest, offset, now, limit)
            tokens = min(burst, tokens + (now - refilled) * rate)
            # Admission needs one event; a batch over the burst passes from a full bucket.
            needed = max(1.0, min(float(events), burst))
            if tokens < needed:
                SLOT.pack_into(self._map, at, digest, tokens, now, rate, burst)
                wait_s = math.ceil((needed - tokens) / rate)
                raise rate_limited(wait_s, rate, burst)
            SLOT.pack_into(self._map, at, digest, tokens - events, now, rate, burst)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, GROUP_BYTES, offset)

    def _slot(
        self, digest: int, offset: int, now: float, limit: RateLimit
    ) -> tuple[int, float, float]:
        """The offset of the key's slot in its group, its tokens and when they
        were refilled (a new bucket starts full)."""
        fullest, fullest_tokens = offset, -math.inf
        for at in range(offset, offset + GROUP_BYTES, SLOT.size):
            owner, tokens, refilled, rate, burst = SLOT.unpack_from(self._map, at)
            if owner == digest:
                return at, tokens, refilled
            refilled_tokens = min(burst, tokens + (now - refilled) * rate)
            if owner == 0 or refilled_tokens >= burst:
                return at, limit.burst, now  # free, or full: the same as a new bucket
            if refilled_tokens > fullest_tokens:
                fullest, fullest_tokens = at, refilled_tokens
        _, tokens, refilled, _, _ = SLOT.unpack_from(self._map, fullest)
        return fullest, tokens, refilled


def _bucket_hash(key: ApiKey) -> int:
    """A non-zero 64-bit hash of the key's bucket: its customer's, else its own."""
    if key.customer_identifier is not None:
        name = f"customer:{key.project_id}:{key.customer_identifier}"
    else:
        name = f"key:{key.id}"
    digest = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    return digest or 1


def rate_limited(wait_s: int, rate: float, burst: float) -> Refusal:
    refusal = Refusal(
        ErrorCode.RATE_LIMITED,
        f"over the rate limit of {rate:g} events per second (burst {burst:g}); retry in {wait_s} s",
    )
    refusal.retry_after_s = str(wait_s)
    return refusal
