"""Which database to use: the one given by URL, or the managed local cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from eventbunker.cluster import ManagedCluster
from eventbunker.config import Settings
from eventbunker.storage.migrate import migrate


@contextmanager
def open_database(settings: Settings, *, own_cluster: bool = False) -> Iterator[str]:
    """Yield a migrated database's conninfo.

    Without a database URL this starts the cluster under ``data_dir`` unless
    a server already runs it. The cluster is stopped on exit when this call
    started it, or always with ``own_cluster`` (the server owns its cluster
    even when a previous, crashed run left it running).
    """
    if settings.database_url:
        migrate(settings.database_url)
        yield settings.database_url
        return
    cluster = ManagedCluster(settings.data_dir.resolve())
    started = cluster.start()
    try:
        migrate(cluster.conninfo)
        yield cluster.conninfo
    finally:
        if started or own_cluster:
            cluster.stop()
