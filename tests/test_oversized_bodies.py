"""A body over the limit is answered 413, and the answer reaches the client.

Sent with Python's own ``http.client`` (what ``urllib`` uses), which writes
the whole body before reading: if the server closed the connection with
unread bytes, the kernel would reset it and the client would see a broken
pipe instead of the 413.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

from conftest import Project, Server

SENDS = 20
BODY = b'[{"event_name": "big", "blob": "' + b"x" * (3 << 20) + b'"}]'


def _send(server: Server, key: str, *, chunked: bool) -> tuple[int, str]:
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    headers = {"X-Api-Key": key, "Content-Type": "application/json"}
    body: bytes | Iterator[bytes] = BODY
    if chunked:
        body = iter([BODY[i : i + 65536] for i in range(0, len(BODY), 65536)])
    try:
        conn.request("POST", "/v1/events", body=body, headers=headers, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, json.loads(response.read())["error"]["code"]
    finally:
        conn.close()


def test_413_reaches_the_client_every_time(server: Server, project: Project) -> None:
    for chunked in (False, True):
        answers = [_send(server, project.write_key, chunked=chunked) for _ in range(SENDS)]
        assert answers == [(413, "body_too_large")] * SENDS, chunked
