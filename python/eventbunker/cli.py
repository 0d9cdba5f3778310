"""Command line: ``serve`` and the admin commands (JSON on stdout)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import orjson
import psycopg

from eventbunker.admin.accounts import (
    create_account,
    create_admin_key,
    revoke_admin_key,
    set_rate_limit,
    set_retention,
)
from eventbunker.admin.keys import KEY_KINDS
from eventbunker.admin.projects import AdminError, create_key, create_project, revoke_key
from eventbunker.config import add_flags, from_args
from eventbunker.database import open_database
from eventbunker.errors import ErrorCode, error_body
from eventbunker.imports.client import (
    DEFAULT_URL,
    DirectTransport,
    Fatal,
    HttpTransport,
    Transport,
    import_file,
)
from eventbunker.imports.sources import FORMATS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventbunker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    add_flags(serve)
    serve.add_argument(
        "--quickstart",
        action="store_true",
        help="mint a write key and print a curl that sends a first event",
    )

    project = commands.add_parser("project", help="manage projects").add_subparsers(
        dest="action", required=True
    )
    project_create = project.add_parser("create", help="create a project and its first keys")
    project_create.add_argument("name")
    project_create.add_argument(
        "--account", type=int, help="owning account id (default: the 'default' account)"
    )
    add_flags(project_create, database_only=True)
    project_retention = project.add_parser(
        "retention", help="keep a project's events DAYS days ('forever': never delete)"
    )
    project_retention.add_argument("project_id", type=int)
    project_retention.add_argument("days", type=_retention_days)
    add_flags(project_retention, database_only=True)
    project_rate_limit = project.add_parser(
        "rate-limit",
        help="a project's own rate limit for its write keys ('default': the server's)",
    )
    project_rate_limit.add_argument("project_id", type=int)
    project_rate_limit.add_argument("events_per_second", type=_or_default(float))
    project_rate_limit.add_argument("burst", type=_or_default(int))
    add_flags(project_rate_limit, database_only=True)

    account = commands.add_parser("account", help="manage accounts").add_subparsers(
        dest="action", required=True
    )
    account_create = account.add_parser("create", help="create an account and its admin key")
    account_create.add_argument("name")
    add_flags(account_create, database_only=True)
    admin_key = account.add_parser(
        "admin-key", help="create another admin key (web app, admin API) for an account"
    )
    admin_key.add_argument("--account", type=int, required=True, help="account id")
    add_flags(admin_key, database_only=True)
    admin_key_revoke = account.add_parser("revoke-admin-key", help="revoke an admin key")
    admin_key_revoke.add_argument("admin_key_id", type=int)
    add_flags(admin_key_revoke, database_only=True)

    key = commands.add_parser("key", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    key_create = key.add_parser("create", help="create a key")
    key_create.add_argument("--project", type=int, required=True, help="project id")
    key_create.add_argument("--kind", choices=KEY_KINDS, required=True)
    key_create.add_argument("--customer-identifier")
    add_flags(key_create, database_only=True)
    key_revoke = key.add_parser("revoke", help="revoke a key")
    key_revoke.add_argument("key_id", type=int)
    add_flags(key_revoke, database_only=True)
    _import_parser(commands)
    writer = commands.add_parser(
        "writer",
        help="scale-out mode: store the JetStream stream in TimescaleDB (run any number)",
    )
    add_flags(writer)
    return parser


def _retention_days(text: str) -> int | None:
    return None if text == "forever" else int(text)


def _or_default(convert: Callable[[str], float]) -> Callable[[str], float | None]:
    """A number, or None for 'default' (the server's setting)."""

    def parse(text: str) -> float | None:
        return None if text == "default" else convert(text)

    parse.__name__ = convert.__name__  # argparse names the type in its errors
    return parse


def _import_parser(commands: Any) -> None:
    bulk = commands.add_parser(
        "import",
        help="bulk-import events from a file, resumable (JSON summary on stdout)",
        description="Send an NDJSON/JSON Lines file or a JSON array of events (plain or"
        " gzip) to a server's bulk import, or write it to the database directly. Rerun"
        " the same command after a failure or Ctrl-C: it resumes without duplicates.",
    )
    bulk.add_argument("file", help=".ndjson, .jsonl or .json array, maybe gzipped; - for stdin")
    target = bulk.add_mutually_exclusive_group()
    target.add_argument("--url", help=f"server URL (env EVENTBUNKER_URL; default {DEFAULT_URL})")
    # --database-url / --data-dir: write to the database directly instead of over HTTP.
    add_flags(bulk, database_only=True, database_group=target)
    bulk.add_argument("--key", help="write key (env EVENTBUNKER_KEY)")
    bulk.add_argument(
        "--import-id",
        help="name under which progress is kept (default: from the file's name, size,"
        " first and last 64 KiB; stdin: random)",
    )
    bulk.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="auto: a JSON array if the data starts with '[', else NDJSON",
    )
    bulk.add_argument("--gzip", action="store_true", help="compress the upload (level 1)")
    bulk.add_argument(
        "--retries",
        type=int,
        default=10,
        help="failed attempts in a row, without progress, before giving up (default 10)",
    )
    bulk.add_argument(
        "--timeout", type=float, default=120.0, help="network timeout in seconds (default 120)"
    )
    bulk.add_argument(
        "--progress-interval",
        type=float,
        default=5.0,
        help="seconds between progress lines when stderr is not a terminal (default 5)",
    )
    bulk.add_argument("--quiet", action="store_true", help="no progress on stderr")
    bulk.add_argument(
        "--fail-on-rejected",
        action="store_true",
        help="exit with status 3 when lines were rejected",
    )


def _admin(args: argparse.Namespace, action: Callable[[psycopg.Connection[Any]], Any]) -> int:
    with open_database(from_args(args)) as conninfo, psycopg.connect(conninfo) as conn:
        try:
            result = action(conn)
        except AdminError as exc:
            sys.stderr.write(error_body(ErrorCode.INVALID_REQUEST, str(exc)).decode() + "\n")
            return 1
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


def _import(args: argparse.Namespace) -> int:
    key = args.key or os.environ.get("EVENTBUNKER_KEY")
    if not key:
        sys.stderr.write("eventbunker import: a write key is needed: --key or EVENTBUNKER_KEY\n")
        return 2

    def run(transport: Transport) -> int:
        return import_file(
            transport,
            args.file,
            fmt=args.format,
            import_id=args.import_id,
            retries=args.retries,
            quiet=args.quiet,
            progress_interval_s=args.progress_interval,
            fail_on_rejected=args.fail_on_rejected,
        )

    if args.database_url or args.data_dir:
        settings = from_args(args)
        with open_database(settings) as conninfo:
            return run(DirectTransport(conninfo, key, settings))
    url = args.url or os.environ.get("EVENTBUNKER_URL") or DEFAULT_URL
    try:
        transport = HttpTransport(url, key, gzip=args.gzip, timeout=args.timeout)
    except Fatal as exc:
        sys.stderr.write(f"eventbunker import: {exc}\n")
        return 2
    return run(transport)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "serve":
        from eventbunker.server import serve  # Granian only where it is needed

        serve(from_args(args), quickstart=args.quickstart)
        return 0
    if args.command == "import":
        return _import(args)
    if args.command == "writer":
        from eventbunker.scaleout.writer import run_writer

        return run_writer(from_args(args))
    if args.command == "project":
        if args.action == "retention":
            return _admin(args, lambda conn: set_retention(conn, None, args.project_id, args.days))
        if args.action == "rate-limit":
            return _admin(
                args,
                lambda conn: set_rate_limit(
                    conn, None, args.project_id, args.events_per_second, args.burst
                ),
            )
        return _admin(args, lambda conn: create_project(conn, args.name, args.account))
    if args.command == "account":
        if args.action == "create":
            return _admin(args, lambda conn: create_account(conn, args.name))
        if args.action == "admin-key":
            return _admin(args, lambda conn: create_admin_key(conn, args.account))
        return _admin(args, lambda conn: revoke_admin_key(conn, args.admin_key_id))
    if args.action == "create":
        return _admin(
            args,
            lambda conn: create_key(conn, args.project, args.kind, args.customer_identifier),
        )
    return _admin(args, lambda conn: revoke_key(conn, args.key_id))


if __name__ == "__main__":
    sys.exit(main())
