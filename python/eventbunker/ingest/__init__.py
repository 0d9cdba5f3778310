"""Ingest: the data path of ``POST /v1/events``.

endpoint (HTTP) -> auth (key cache) -> eventbunker._native (parse, validate,
enrich, encode) -> spool (group fsync; the 202) -> drainer -> writer (COPY
into TimescaleDB, exactly once).
"""
