"""`eventbunker import`: the streaming NDJSON endpoint, its jobs and the command-line client."""
