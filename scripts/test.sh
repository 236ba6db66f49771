#!/usr/bin/env bash
# Run the whole check from a fresh clone: venv, install with test extras, ruff, mypy, pytest.
# Database: JOBCRON_TEST_DSN if set, else testcontainers when Docker answers, else an embedded server.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${JOBCRON_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    echo "test.sh: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# reinstall only when the dependency list changed
stamp="$VENV/.jobcron-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "test.sh: installing jobcron with its test extras"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".[test,dev]"
    echo "$want" > "$stamp"
fi

# the start script's test runs shellcheck (Debian's package); without it that test is skipped
if ! command -v shellcheck >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing shellcheck"
    { apt-get install -y -qq shellcheck || { apt-get update -qq && apt-get install -y -qq shellcheck; }; } \
        >/dev/null 2>&1 || echo "test.sh: could not install shellcheck; its test will be skipped"
fi

# the PgBouncer tests (tests/acceptance/test_pgbouncer.py, and one in test_db_refusals.py) run Debian's
# pgbouncer; without it, they are skipped with the reason
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing pgbouncer"
    { apt-get install -y -qq pgbouncer || { apt-get update -qq && apt-get install -y -qq pgbouncer; }; } \
        >/dev/null 2>&1 || echo "test.sh: could not install pgbouncer; its test will be skipped"
fi

# the dashboard's browser test (tests/acceptance/test_web_browser.py) drives Debian's chromium through
# playwright; without it, it is skipped
if ! command -v chromium >/dev/null && [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing chromium"
    { apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }; } \
        >/dev/null 2>&1 || echo "test.sh: could not install chromium; the browser test will be skipped"
fi

# the live-systemd test (tests/acceptance/test_systemd_live.py) boots the units under a private systemd
# (Debian's package; nothing starts on the host itself); without it, or without namespaces, it is skipped
if [ ! -x /lib/systemd/systemd ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null &&
    unshare --mount --pid --fork true 2>/dev/null; then
    echo "test.sh: installing systemd"
    { apt-get install -y -qq systemd || { apt-get update -qq && apt-get install -y -qq systemd; }; } \
        >/dev/null 2>&1 || echo "test.sh: could not install systemd; the live-systemd test will be skipped"
fi

echo "test.sh: ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check --quiet . || { echo "test.sh: run '$VENV/bin/ruff format .'"; exit 1; }
echo "test.sh: mypy (strict on jobcron/)"
"$VENV/bin/mypy"
echo "test.sh: import contracts (pyproject.toml [tool.importlinter])"
"$VENV/bin/lint-imports" --no-cache >/dev/null || "$VENV/bin/lint-imports" --no-cache

echo "test.sh: pytest"
markers=${JOBCRON_TEST_MARKERS:-"not slow"}
set +e
"$VENV/bin/python" -m pytest -m "$markers" "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "test.sh: no tests were collected: that is a failure, not a pass" >&2
    exit 1
fi
exit "$status"
