"""The run folder as a database: no torch, no subprocess."""
