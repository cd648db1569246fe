"""The label store: one SQLite file of paid answers, its schema and its exports."""
