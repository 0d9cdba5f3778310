"""Settings: one definition gives each setting its flag, variable and --help line."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from eventbunker.cli import build_parser
from eventbunker.config import Settings, env_name, flag_name, from_args


def serve_help() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "eventbunker", "serve", "--help"],
        capture_output=True,
        timeout=60,
        check=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    return result.stdout.decode()


def test_every_setting_has_a_flag_and_a_variable_in_help() -> None:
    text = serve_help()
    for item in fields(Settings):
        assert flag_name(item) in text, item.name
        assert env_name(item) in text, item.name
        assert item.metadata["help"].split(" (")[0][:30] in text, item.name


def test_flag_wins_over_variable_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    monkeypatch.setenv("EVENTBUNKER_QUERY_POOL_SIZE", "7")
    monkeypatch.setenv("EVENTBUNKER_DRAIN_INTERVAL_MS", "5.5")
    settings = from_args(parser.parse_args(["serve", "--query-pool-size", "9"]))
    assert settings.query_pool_size == 9
    assert settings.drain_interval_ms == 5.5
    assert settings.delete_timeout_ms == Settings().delete_timeout_ms
    settings = from_args(parser.parse_args(["serve", "--no-anonymize-ip", "--spool-dir", "/x"]))
    assert settings.anonymize_ip is False
    assert settings.spool_dir == Path("/x")
    assert settings.query_pool_size == 7


def test_every_setting_round_trips_through_the_environment() -> None:
    changed = Settings(
        **{
            item.name: {"int": 3, "float": 2.5, "bool": True, "Path": Path("/d"), "str": "s"}[
                str(item.type)
            ]
            for item in fields(Settings)
        }
    )
    assert Settings.from_env(changed.to_env()) == changed


def test_admin_commands_take_only_the_database_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(["project", "create", "p", "--data-dir", "/tmp/d"])
    assert from_args(args).data_dir == Path("/tmp/d")
    with pytest.raises(SystemExit):
        parser.parse_args(["project", "create", "p", "--port", "1"])
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--data-dir", "/d", "--database-url", "postgresql://x"])
