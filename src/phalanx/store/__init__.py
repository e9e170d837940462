"""The store: run folders on disk (and, for `serve`, the database)."""
