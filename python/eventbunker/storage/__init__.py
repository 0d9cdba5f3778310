"""Storage: schema migrations and the TimescaleDB side of the data path."""
