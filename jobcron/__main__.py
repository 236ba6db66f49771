"""`python -m jobcron` runs the `job_cron` command line."""

from __future__ import annotations

from jobcron.cli import main

if __name__ == "__main__":
    main()
