"""Enrichment settings → the Rust ``Enricher`` (GeoIP database, trusted
proxies, IP anonymisation), built once per worker; the work itself happens in
``_native.prepare_events`` (rust/src/enrich/)."""

from __future__ import annotations

import datetime as dt
import logging
import re

from eventbunker import _native
from eventbunker.config import Settings

log = logging.getLogger("eventbunker")


class EnrichmentConfigError(ValueError):
    """A setting the Enricher refuses (bad proxy entry, unreadable database)."""


def proxy_list(text: str) -> list[str]:
    """``EVENTBUNKER_TRUSTED_PROXIES`` / ``--trusted-proxies``: addresses and
    CIDRs separated by commas and/or whitespace."""
    return [item for item in re.split(r"[,\s]+", text) if item]


def build_enricher(settings: Settings) -> _native.Enricher:
    """The worker's Enricher; ``EnrichmentConfigError`` names the bad setting."""
    try:
        return _native.Enricher(
            geoip_db=settings.geoip_db or None,
            trusted_proxies=proxy_list(settings.trusted_proxies),
            anonymize_ip=settings.anonymize_ip,
        )
    except ValueError as exc:
        raise EnrichmentConfigError(str(exc)) from None


def describe(enricher: _native.Enricher) -> str:
    """One line for the start-up log."""
    if enricher.geoip_db is None:
        geo = (
            "GeoIP: no database configured (--geoip-db / EVENTBUNKER_GEOIP_DB):"
            " geo_* columns will be null"
        )
    else:
        built = dt.datetime.fromtimestamp(enricher.geoip_build_epoch or 0, dt.UTC).date()
        geo = f"GeoIP: {enricher.geoip_db} ({enricher.geoip_database_type}, built {built})"
    proxies = ", ".join(enricher.trusted_proxies) or "none"
    anonymize = "on" if enricher.anonymize_ip else "off"
    return f"{geo}; trusted proxies: {proxies}; IP anonymisation: {anonymize}"


def check_and_log(settings: Settings) -> None:
    """At ``serve`` start, before the workers: refuse bad settings with a clear
    message, and say once how events will be enriched."""
    try:
        enricher = build_enricher(settings)
    except EnrichmentConfigError as exc:
        raise SystemExit(f"eventbunker serve: {exc}") from None
    log.info("%s", describe(enricher))
