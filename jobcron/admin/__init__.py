"""What operators do: list, show, cancel, retry, reset, purge, pause jobs; status and health."""
