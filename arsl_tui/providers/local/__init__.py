"""Local backend: a directory object store, torchrun jobs, the local gateway, SQLite state."""
