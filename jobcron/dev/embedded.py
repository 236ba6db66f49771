"""A private PostgreSQL server that jobcron starts and controls: for the demo, tests and benchmarks."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
import structlog
from psycopg import sql

from jobcron.dev import host
from jobcron.dev.host import PG_BIN_ENV, find_binaries
from jobcron.errors import DataDirInUse, JobCronError

# PostgreSQL refuses to run as root, so root runs it as this unprivileged account.
OS_USER = "jobcron-pg"
DATABASE = "jobcron"
SHUTDOWN_MODES = ("smart", "fast", "immediate")
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_SOCKET_PATH_MAX = 107
_LOG_ROTATE_BYTES = 16 * 1024 * 1024

log = structlog.get_logger()


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class EmbeddedServer:
    """A PostgreSQL cluster in data_dir, started and stopped by this process (trust auth, 127.0.0.1 only)."""

    data_dir: Path
    port: int = 0
    # fsync, synchronous_commit and full_page_writes off: only for throwaway test clusters
    fast: bool = False
    bin_dir: Path | None = None
    user: str = "postgres"
    os_user: str = OS_USER
    stop_at_exit: bool = True
    _auto_port: bool = field(default=False, init=False, repr=False)
    _lock_fd: int | None = field(default=None, init=False, repr=False)
    _socket_tmp: Path | None = field(default=None, init=False, repr=False)
    _owner: pwd.struct_passwd | None = field(default=None, init=False, repr=False)
    _started: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        self._auto_port = self.port == 0

    @property
    def pgdata(self) -> Path:
        """The PGDATA folder inside data_dir."""
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        """The server's log."""
        return self.data_dir / "server.log"

    @property
    def dsn(self) -> str:
        """DSN of the 'jobcron' database."""
        return self.admin_dsn(DATABASE)

    def admin_dsn(self, dbname: str = "postgres") -> str:
        """DSN of any database on this server, as its superuser."""
        if self.port == 0:
            raise JobCronError("the embedded server has no port yet: start it first")
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    @property
    def pid(self) -> int | None:
        """The live postmaster's pid, if one runs on data_dir."""
        pid = self._pidfile_pid()
        return pid if pid is not None and host.alive(pid) else None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> str:
        """initdb if needed, start, wait until ready, create database 'jobcron'; return its DSN."""
        return self._start(timeout, may_move_port=self._auto_port)

    def restart(self, timeout: float = 60.0) -> None:
        """Stop (connections drop) and start again on the same port."""
        self.stop()
        self._start(timeout, may_move_port=False)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server with pg_ctl (fast: roll back open transactions, drop connections); idempotent."""
        if mode not in SHUTDOWN_MODES:
            raise ValueError(f"shutdown mode must be one of {SHUTDOWN_MODES}, not {mode!r}")
        if self._lock_fd is None and not self._try_lock():
            log.warning(
                "embedded_postgres_stop_skipped", data_dir=str(self.data_dir), reason="in use elsewhere"
            )
            return
        try:
            pid = self.pid
            if pid is not None:
                result = self._pg_ctl("stop", "-m", mode, "-t", "120", timeout=150)
                if result.returncode != 0 and host.alive(pid):
                    raise JobCronError(
                        f"pg_ctl stop failed: {result.stderr.strip() or result.stdout.strip()}"
                    )
        finally:
            self._after_stop()

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; the next start runs crash recovery."""
        pid = self.pid
        if pid is None:
            return
        children = host.children(pid)
        os.kill(pid, signal.SIGKILL)
        host.wait_gone([pid], 10)
        # orphaned backends exit on postmaster death; any left would keep the old shared memory in use
        for straggler in host.wait_gone(children, 5):
            with contextlib.suppress(ProcessLookupError):
                os.kill(straggler, signal.SIGKILL)
        host.wait_gone(children, 5)
        self._started = False
        self._unregister_atexit()

    # -- internals --

    def _start(self, timeout: float, *, may_move_port: bool) -> str:
        began = time.monotonic()
        deadline = began + timeout
        if self._started and self.pid is not None:
            return self.dsn
        if self.bin_dir is None:
            self.bin_dir = find_binaries()
        self._owner = host.ensure_os_user(self.os_user) if os.geteuid() == 0 else None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._lock_fd is None and not self._try_lock():
            raise DataDirInUse(self._in_use_message())
        try:
            self._prepare_data_dir()
            self._clear_leftover_server()
            fresh = not (self.pgdata / "PG_VERSION").exists()
            if fresh:
                self._initdb(deadline)
            else:
                self._check_version()
            self._rotate_log()
            self._launch(deadline, may_move_port=may_move_port)
            self._started = True
            self._ensure_database(deadline)
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop("immediate")
            self._after_stop()
            raise
        if self.stop_at_exit:
            atexit.register(self._stop_at_exit)
        log.info(
            "embedded_postgres_started",
            port=self.port,
            data_dir=str(self.data_dir),
            initdb=fresh,
            seconds=round(time.monotonic() - began, 3),
        )
        return self.dsn

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        # English messages: start() reads the log to tell a taken port from other failures
        env["LC_ALL"] = "C"
        extra: dict[str, Any] = {}
        if self._owner is not None:
            extra = {"user": self._owner.pw_uid, "group": self._owner.pw_gid, "extra_groups": []}
        return subprocess.run(
            args,
            cwd=self.data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **extra,
        )

    def _pg_ctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        assert self.bin_dir is not None
        return self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-w", *args], timeout)

    def _give(self, path: Path) -> None:
        """Hand a path to the OS user when running as root."""
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _prepare_data_dir(self) -> None:
        if self._owner is not None:
            self._ensure_traversable(self.data_dir)
            assert self.bin_dir is not None
            self._ensure_traversable(self.bin_dir / "postgres")
            if self.data_dir.stat().st_uid != self._owner.pw_uid:
                for root, dirs, files in os.walk(self.data_dir):
                    for name in [*dirs, *files]:
                        os.lchown(Path(root) / name, self._owner.pw_uid, self._owner.pw_gid)
                self._give(self.data_dir)
        self.data_dir.chmod(0o700)

    def _ensure_traversable(self, path: Path) -> None:
        """Let the OS user reach path: add search (not list) permission on ancestors it cannot enter."""
        assert self._owner is not None
        groups = set(os.getgrouplist(self._owner.pw_name, self._owner.pw_gid))
        changed: list[str] = []
        for parent in path.parents:
            st = parent.stat()
            # the kernel checks only the class the user falls in: owner, else group, else other
            if st.st_uid == self._owner.pw_uid:
                bit = stat.S_IXUSR
            elif st.st_gid in groups:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                parent.chmod(stat.S_IMODE(st.st_mode) | bit)
                changed.append(str(parent))
        if changed:
            log.warning("embedded_postgres_chmod_o_x", user=self._owner.pw_name, folders=changed)

    def _try_lock(self) -> bool:
        if not self.data_dir.is_dir():
            return True
        fd = os.open(self.data_dir / "embedded.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _after_stop(self) -> None:
        self._started = False
        self._unregister_atexit()
        if self._socket_tmp is not None:
            shutil.rmtree(self._socket_tmp, ignore_errors=True)
            self._socket_tmp = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    def _unregister_atexit(self) -> None:
        atexit.unregister(self._stop_at_exit)

    def _pidfile_pid(self) -> int | None:
        try:
            first = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        except (FileNotFoundError, NotADirectoryError):
            return None
        return int(first) if first.strip().isdigit() else None

    def _clear_leftover_server(self) -> None:
        """With the lock held, a running postmaster here belongs to a process that died: stop it."""
        for folder in {self.data_dir, self._socket_tmp or self.data_dir}:
            for lock in folder.glob(".s.PGSQL.*.lock"):
                with contextlib.suppress(OSError, ValueError):
                    owner = int(lock.read_text().split("\n", 1)[0])
                    if not host.alive(owner):
                        # a killed postmaster's socket lock: a zombie's pid still looks alive to PostgreSQL
                        lock.unlink()
                        lock.with_suffix("").unlink(missing_ok=True)
        pid = self._pidfile_pid()
        if pid is None:
            return
        if host.alive(pid) and host.looks_like_postgres(pid):
            log.warning("embedded_postgres_leftover_stopped", pid=pid, data_dir=str(self.data_dir))
            if self._pg_ctl("stop", "-m", "fast", "-t", "30", timeout=60).returncode != 0 and host.alive(pid):
                self.kill()
        elif host.alive(pid) or Path(f"/proc/{pid}/stat").exists():
            # the pid now names a zombie or another program: PostgreSQL would refuse to start
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)

    def _initdb(self, deadline: float) -> None:
        assert self.bin_dir is not None
        staging = self.data_dir / "pgdata.init"
        # a previous initdb that was interrupted leaves a half-made cluster: start over
        shutil.rmtree(staging, ignore_errors=True)
        args = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(staging),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]
        if self.fast:
            args.append("--no-sync")
        try:
            result = self._run(args, timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as exc:
            raise JobCronError(f"initdb did not finish in time in {staging}") from exc
        if result.returncode != 0:
            raise JobCronError(
                f"initdb failed in {staging}: {(result.stderr or result.stdout).strip()[-2000:]}"
            )
        hba = staging / "pg_hba.conf"
        hba.write_text(
            "# written by jobcron: trust on the private socket and on 127.0.0.1, nothing else\n"
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        with (staging / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# settings of the embedded server, rewritten at each start\ninclude 'jobcron.conf'\n"
            )
        # renamed only when complete, so a half-made cluster is never mistaken for a ready one
        staging.rename(self.pgdata)

    def _check_version(self) -> None:
        assert self.bin_dir is not None
        have = (self.pgdata / "PG_VERSION").read_text().strip()
        want = host.binaries_major(self.bin_dir)
        if have != str(want):
            raise JobCronError(
                f"{self.pgdata} holds a PostgreSQL {have} cluster but {self.bin_dir} is PostgreSQL {want}: "
                f"set {PG_BIN_ENV} to PostgreSQL {have} binaries or remove {self.data_dir}"
            )

    def _rotate_log(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.log_file.stat().st_size > _LOG_ROTATE_BYTES:
                self.log_file.replace(self.log_file.with_name("server.log.1"))

    def _socket_dir(self) -> Path:
        if len(f"{self.data_dir}/.s.PGSQL.{self.port}") <= _SOCKET_PATH_MAX:
            return self.data_dir
        if self._socket_tmp is None:
            self._socket_tmp = Path(tempfile.mkdtemp(prefix="jobcron-pg-"))
            self._give(self._socket_tmp)
        return self._socket_tmp

    def _write_settings(self) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self._socket_dir()),
            "max_connections": "200",
        }
        if self.fast:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        path = self.pgdata / "jobcron.conf"
        path.write_text("".join(f"{k} = {_quote(v)}\n" for k, v in settings.items()))
        self._give(path)

    def _launch(self, deadline: float, *, may_move_port: bool) -> None:
        for attempt in range(5):
            if self.port == 0:
                # the port of the last run when it is still free: the DATABASE_URL a newcomer exported,
                # or wrote into a config, keeps working from one run to the next
                remembered = self._remembered_port() if attempt == 0 else None
                self.port = remembered or host.free_port()
            self._write_settings()
            offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            remaining = max(1.0, deadline - time.monotonic())
            try:
                result = self._pg_ctl(
                    "-l", str(self.log_file), "-t", str(int(remaining) + 1), "start", timeout=remaining + 10
                )
            except subprocess.TimeoutExpired as exc:
                raise JobCronError(f"PostgreSQL did not start in time; see {self.log_file}") from exc
            if result.returncode == 0:
                with contextlib.suppress(OSError):
                    self._port_file.write_text(f"{self.port}\n")
                return
            tail = self._log_since(offset)
            if may_move_port and ("could not bind" in tail or "could not create any TCP/IP sockets" in tail):
                # another program took the port between our probe and the server's bind
                self.port = 0
                continue
            raise JobCronError(
                f"PostgreSQL did not start ({(result.stderr or result.stdout).strip()}): {tail.strip()[-2000:]}"
            )
        raise JobCronError("PostgreSQL could not find a free port")

    def _in_use_message(self) -> str:
        """Who holds the data dir, and how to use the server it runs (a `demo --keep-running` elsewhere)."""
        text = f"{self.data_dir} is in use by another process's embedded server"
        try:
            port = int(self._port_file.read_text().strip())
        except (OSError, ValueError):
            return text
        if self.pid is None:
            return text
        url = f"postgresql://{self.user}@127.0.0.1:{port}/{DATABASE}"
        return (
            f"{text} (running on port {port}, pid {self.pid}: a `job_cron demo --keep-running` or "
            f"`scripts/start_job_cron.sh dev` still running?). To use that server from here: "
            f"export DATABASE_URL='{url}', then run the command again"
        )

    @property
    def _port_file(self) -> Path:
        return self.data_dir / "port"

    def _remembered_port(self) -> int | None:
        """The port the last run of this data_dir had, when 127.0.0.1 still has it free."""
        try:
            port = int(self._port_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return port if 1024 <= port <= 65535 and host.port_free(port) else None

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _ensure_database(self, deadline: float) -> None:
        while True:
            try:
                with psycopg.connect(self.admin_dsn(), autocommit=True, connect_timeout=5) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if exists is None:
                        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
