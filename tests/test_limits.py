"""Every request limit is configurable and has its own clear error."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from conftest import Project, Server, start_server, stop_server


@pytest.fixture(scope="module")
def small_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        database_url,
        tmp_path_factory.mktemp("limits"),
        "--workers", "1",
        "--max-body-bytes", "2000",
        "--max-batch-events", "5",
        "--max-json-depth", "4",
        "--max-string-bytes", "100",
    )  # fmt: skip
    try:
        yield server
    finally:
        stop_server(server)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"event_name": "x", "pad": "y" * 1990}, 413, "body_too_large"),
        ([{"event_name": "x"}] * 6, 400, "batch_too_large"),
        ({"event_name": "x", "a": {"b": {"c": {"d": {}}}}}, 400, "too_deep"),
        ({"event_name": "x", "s": "z" * 101}, 400, "string_too_long"),
    ],
)
def test_each_limit_has_its_own_error(
    small_server: Server, project: Project, body: object, status: int, code: str
) -> None:
    response = httpx.post(
        small_server.url + "/v1/events",
        content=orjson.dumps(body),
        headers={"X-Api-Key": project.write_key, "Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_within_the_limits_is_accepted(small_server: Server, project: Project) -> None:
    body = [{"event_name": "x", "a": {"b": {}}, "s": "z" * 100}] * 5  # depth 4 in the array
    response = httpx.post(
        small_server.url + "/v1/events", json=body, headers={"X-Api-Key": project.write_key}
    )
    assert response.status_code == 202, response.text


def test_native_refusals_carry_status_code_message_and_details() -> None:
    """The extension's IngestError (a PyO3 exception type): args and attributes agree."""
    from eventbunker import _native

    with pytest.raises(_native.IngestError) as refused:
        _native.prepare_events(
            b'[{"event_name": "a"}, {"event_name": "b"}]',
            gzip=False,
            project_id=1,
            customer_identifier=None,
            received_at_us=1_700_000_000_000_000,
            peer_ip=None,
            user_agent=None,
            referer=None,
            limits=_native.Limits(max_batch_events=1),
        )
    error = refused.value
    assert isinstance(error, Exception)
    assert type(error).__module__ == "eventbunker._native"
    assert (error.status, error.code) == (400, "batch_too_large")
    assert error.args == (error.status, error.code, error.message, error.details)
    assert error.message and isinstance(error.details, list)
