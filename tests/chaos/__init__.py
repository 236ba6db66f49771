"""The chaos run: workflows, the run itself, and the checker that trusts only the database."""
