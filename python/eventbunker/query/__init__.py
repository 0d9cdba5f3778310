"""``POST /v1/query`` and ``POST /v1/delete``: the read side of the data path.

The steps read from the file names: ``request`` validates a body into typed
values (``properties`` resolves property names, ``timeframes`` turns
relative and absolute timeframes into instants), ``filters`` and
``builder`` compose the SQL with ``psycopg.sql`` (property names never
become SQL text), and ``endpoint`` authenticates, runs it under a time
limit and shapes the answer.
"""
