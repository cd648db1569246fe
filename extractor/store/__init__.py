"""The label store: one SQLite file of paid answers (and its -wal), its schema and migrations, one writer at a
time, requests on record before they are sent, its check, backup and export."""
