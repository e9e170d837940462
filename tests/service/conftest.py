from tests.store.conftest import data_dir, database_url, postgres, store

__all__ = ["data_dir", "database_url", "postgres", "store"]
