"""A local PostgreSQL + TimescaleDB cluster living under an EventBunker data directory.

Used by ``eventbunker serve`` when no database URL is given, by the admin commands
with ``--data-dir``, and by the test suite.

Layout, for a data directory ``D`` (``./.eventbunker`` by default)::

    D/cluster.lock       fcntl lock: one process at a time initializes/starts/stops
    D/pg/                the PostgreSQL data directory (initdb on first use)
    D/pg/eventbunker.conf  settings managed here, rewritten before every start and
                         included at the end of postgresql.conf (ALTER SYSTEM, i.e.
                         postgresql.auto.conf, still overrides it)
    D/run/               Unix socket directory (mode 0700)
    D/postgresql.log     server log (``pg_ctl -l``)

The server listens on its Unix socket only (``listen_addresses = ''``), so it never
collides with a PostgreSQL already running on the machine, nor with other managed
clusters: the port number only names the socket (``.s.PGSQL.<port>``).

Socket paths are limited (``sun_path``: 108 bytes on Linux, 104 on BSD/macOS). When
``D/run/.s.PGSQL.<port>`` would be 100 bytes or longer, the socket directory is
``/tmp/eventbunker-<uid>-<hash of D>`` instead (0700, owned by the server's account).

PostgreSQL refuses to run as root: when this process is root, initdb, pg_ctl and the
server run as the ``postgres`` system account (created with ``useradd --system`` if
missing), which owns ``D/pg``, ``D/run`` and the log; the directories above ``D`` get
the search (x) permission that account needs. Otherwise everything runs as the
current user. Either way the cluster's superuser role is ``eventbunker``, with
``trust`` authentication on the socket (the socket directory is private).

The PostgreSQL binaries are those of :func:`find_pg_bin_dir` (override with
``EVENTBUNKER_PG_BIN``); ``scripts/install-postgres.sh`` installs them.

Modules: ``binaries`` (finding PostgreSQL), ``accounts`` (the OS account and
permissions), ``managed`` (the lifecycle), ``errors``.
"""

from eventbunker.cluster.binaries import find_pg_bin_dir
from eventbunker.cluster.errors import ClusterError
from eventbunker.cluster.managed import ManagedCluster

__all__ = ["ClusterError", "ManagedCluster", "find_pg_bin_dir"]
