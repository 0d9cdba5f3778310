"""EventBunker: self-hosted event tracking and analytics on TimescaleDB."""
