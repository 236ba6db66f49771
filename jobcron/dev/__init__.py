"""Tools for a local run: a private PostgreSQL server and the demo."""
