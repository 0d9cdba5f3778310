"""Ingest: the data path of ``POST /v1/events``.

endpoint (HTTP) -> auth (key cache) -> eventbunker._native (parse, validate,
encode) -> batcher (group commit) -> writer (COPY into TimescaleDB).
"""
