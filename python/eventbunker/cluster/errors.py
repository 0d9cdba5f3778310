"""The one error of the managed cluster."""


class ClusterError(RuntimeError):
    """The managed PostgreSQL cluster could not be set up, started or stopped."""
