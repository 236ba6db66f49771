"""A real systemd for tests of the units: PID 1 of private namespaces, on an overlay of this machine's root.

systemd runs as PID 1 of its own PID, mount, cgroup, UTS and IPC namespaces. Its root is an overlay of
this machine's "/" whose writes go to a tmpfs that lives only as long as the private mount namespace,
so the host's files, users and units are never changed. The network namespace is shared: the units
reach the test's PostgreSQL on 127.0.0.1. It boots into a target that pulls in only sysinit.target,
so none of the host's enabled services (its PostgreSQL among them) starts a second copy.

`unavailable()` says why this cannot work on a machine (not root, no systemd, no namespaces); the
stage that runs inside the namespaces is this file run as a script (`python systemd_live.py stage2`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

SYSTEMD = Path("/lib/systemd/systemd")
TARGET = "jobcron-live.target"
HOSTNAME = "jobcron-live"
# commands run inside get this environment, nothing of the test process's own
INSIDE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}
# units that would act on the host's kernel, devices or clock, which the namespaces do not separate
MASKED = (
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-modules-load.service",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-timesyncd.service",
    "systemd-pstore.service",
    "systemd-random-seed.service",
    "systemd-firstboot.service",
    "systemd-repart.service",
    "systemd-machine-id-commit.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
)
# the checkout goes to /srv/jobcron without its environments, state and caches
NOT_COPIED = (".git", ".venv", ".state", "logs", "__pycache__", "*.egg-info", "build", "dist", ".*_cache")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def unavailable() -> str | None:
    """Why a private systemd cannot boot here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (it mounts an overlay and creates namespaces)"
    if not SYSTEMD.is_file():
        return f"systemd is not installed ({SYSTEMD} is missing)"
    for tool in ("unshare", "nsenter", "setpriv", "mount", "umount", "pivot_root"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    if "\toverlay\n" not in Path("/proc/filesystems").read_text():
        return "the kernel offers no overlay file system"
    probe = subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", "--cgroup", "--uts", "--ipc", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return f"namespaces are not available: {probe.stderr.strip()}"
    if not _hierarchies():
        return "no cgroup file system is mounted"
    try:
        for _controllers, folder in _hierarchies():
            probe_cgroup = folder / f"jobcron-live-probe-{os.getpid()}"
            probe_cgroup.mkdir()
            probe_cgroup.rmdir()
    except OSError as exc:
        # root of a user namespace (a rootless container) may create namespaces but no cgroups
        return f"cannot create cgroups for the private systemd: {exc}"
    venv = subprocess.run(
        ["python3", "-c", "import ensurepip, venv"], capture_output=True, timeout=30, check=False
    )
    if venv.returncode != 0:
        return "the system's python3 cannot create virtualenvs (python3-venv), which the install needs"
    return None


class LiveSystemd:
    """One private systemd: boot(), then run commands inside it, then shutdown()."""

    def __init__(self, checkout: Path) -> None:
        self.checkout = checkout.resolve()
        self.base = Path(tempfile.mkdtemp(prefix="jobcron-live-"))
        self.cgroup_name = self.base.name
        self.pid = 0  # systemd's pid as this machine sees it
        self._unshare: subprocess.Popen[bytes] | None = None
        self._cgroups: list[Path] = []

    def boot(self, timeout: float = 90.0) -> None:
        """Start systemd in the namespaces and wait until it finished booting."""
        self._cgroups = _make_cgroups(self.cgroup_name)
        procs = [str(d / "cgroup.procs") for d in self._cgroups]
        # a test process that dies takes the namespaces along: unshare gets SIGKILL, and so does
        # systemd when unshare goes
        unshare = [
            "setpriv",
            "--pdeathsig",
            "KILL",
            "--",
            "unshare",
            "--kill-child=SIGKILL",
            "--cgroup",
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--uts",
            "--ipc",
            "--",
            sys.executable,
            str(Path(__file__).resolve()),
            "stage2",
            str(self.base),
            str(self.checkout),
        ]
        # unshare must start inside the new cgroups: they become the root of its cgroup namespace
        script = f'for f in "$@"; do echo $$ >"$f" || exit 1; done; exec {shlex.join(unshare)}'
        with (self.base / "boot.log").open("wb") as log:
            self._unshare = subprocess.Popen(
                ["sh", "-c", script, "sh", *procs],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.pid:
            self.pid = self._systemd_pid()
            if self._unshare.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"systemd did not start: {self.boot_log()}")
            time.sleep(0.1)
        # polled: until systemd's own socket exists, systemctl fails at once, --wait or not
        state = ""
        while state not in ("running", "degraded") and time.monotonic() < deadline:
            time.sleep(0.1)
            state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
        if state != "running":
            failed = self.run("systemctl", "--failed", "--no-legend", check=False).stdout
            raise RuntimeError(f"systemd booted into state {state!r}; failed units:\n{failed}")

    def shutdown(self) -> None:
        """Let systemd exit (a container's PID 1 exits; nothing reboots), then remove what boot made."""
        if self._unshare is not None and self._unshare.poll() is None:
            if self.pid:
                self.run("systemctl", "exit", check=False, timeout=30)
            try:
                self._unshare.wait(30)
            except subprocess.TimeoutExpired:
                # PID 1 of the namespace gone: the kernel ends every process in it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid or self._unshare.pid, 9)
                self._unshare.wait(30)
        for top in self._cgroups:
            _remove_cgroup(top)
        shutil.rmtree(self.base, ignore_errors=True)

    def _systemd_pid(self) -> int:
        assert self._unshare is not None
        children = Path(f"/proc/{self._unshare.pid}/task/{self._unshare.pid}/children")
        with contextlib.suppress(OSError):
            for pid in children.read_text().split():
                if Path(f"/proc/{pid}/exe").resolve() == SYSTEMD.resolve():
                    return int(pid)
        return 0

    def boot_log(self) -> str:
        """What the namespaces' first stage printed."""
        with contextlib.suppress(OSError):
            return (self.base / "boot.log").read_text(errors="replace")[-3000:]
        return ""

    def run(
        self, *argv: str, check: bool = True, timeout: float = 180, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in systemd's namespaces."""
        done = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", "--", *argv],
            env={**INSIDE_ENV, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{shlex.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
        return done

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """systemctl inside."""
        return self.run("systemctl", *args, check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """Properties of a unit, as `systemctl show` gives them."""
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)

    def prop(self, unit: str, name: str) -> str:
        """One property of a unit."""
        return self.show(unit, name).get(name, "")

    def path(self, inside: str) -> Path:
        """A path of the private root, as this machine reaches it."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def write(self, inside: str, text: str, mode: int = 0o644) -> None:
        """Create or replace a file inside (its folder too)."""
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def journal(self, *units: str) -> list[dict[str, Any]]:
        """The journal entries of these units, oldest first."""
        args = [a for u in units for a in ("-u", u)]
        out = self.run("journalctl", *args, "-o", "json", "--no-pager", check=False).stdout
        entries = []
        for line in out.splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entries.append(json.loads(line))
        return entries


def _hierarchies() -> list[tuple[str, Path]]:
    """(controllers, folder of this process's cgroup) per hierarchy; controllers '' is cgroup v2."""
    v2: Path | None = None
    v1: list[tuple[set[str], Path]] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, fs = line.partition(" - ")
        fstype, _source, options = [*fs.split(), "", "", ""][:3]
        point = Path(fields.split()[4])
        if fstype == "cgroup2" and v2 is None:
            v2 = point
        elif fstype == "cgroup":
            v1.append((set(options.split(",")), point))
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        wanted = set(controllers.split(","))
        point = v2 if controllers == "" else next((m for opts, m in v1 if wanted <= opts), None)
        if point is not None:
            found.append((controllers, point / path.lstrip("/")))
    return found


def _make_cgroups(name: str) -> list[Path]:
    """A new cgroup below this process's own in every hierarchy."""
    made = []
    for controllers, folder in _hierarchies():
        sub = folder / name
        sub.mkdir(exist_ok=True)
        if "cpuset" in controllers.split(","):
            # a v1 cpuset cgroup takes no process until it has cpus and memory nodes
            for key in ("cpuset.cpus", "cpuset.mems"):
                (sub / key).write_text((folder / key).read_text())
        made.append(sub)
    return made


def _remove_cgroup(top: Path) -> None:
    """Remove a cgroup tree, deepest first (a cgroup folder goes once it has no process and no child)."""
    for _ in range(50):
        for folder, _dirs, _files in os.walk(top, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        if not top.exists():
            return
        time.sleep(0.1)


def _mount(*args: str | Path) -> None:
    subprocess.run(["mount", *map(str, args)], check=True)


def stage2(base: Path, checkout: Path) -> NoReturn:
    """PID 1 of the new namespaces: build the private root, move into it, become systemd."""
    scratch, root = base / "scratch", base / "root"
    scratch.mkdir()
    root.mkdir()
    _mount("-t", "tmpfs", "-o", "size=3g,mode=755", "jobcron-live", scratch)
    (scratch / "upper").mkdir()
    (scratch / "work").mkdir()
    _mount(
        "-t",
        "overlay",
        "-o",
        f"lowerdir=/,upperdir={scratch}/upper,workdir={scratch}/work",
        "jobcron-live",
        root,
    )
    units = root / "etc/systemd/system"
    (units / TARGET).write_text(
        "[Unit]\nDescription=jobcron live systemd tests\nRequires=sysinit.target\n"
        "After=sysinit.target\nAllowIsolate=yes\n"
    )
    for unit in MASKED:
        (units / unit).unlink(missing_ok=True)
        (units / unit).symlink_to("/dev/null")
    (root / "etc/hostname").write_text(f"{HOSTNAME}\n")
    # a copy: pip builds in the source tree, and systemd-tmpfiles empties /tmp at boot
    shutil.rmtree(root / "srv/jobcron", ignore_errors=True)
    shutil.copytree(checkout, root / "srv/jobcron", symlinks=True, ignore=shutil.ignore_patterns(*NOT_COPIED))
    _api_file_systems(root)
    # pivot_root, not chroot: under a chroot PrivateUsers=yes fails (status=217/USER)
    (root / "mnt/.oldroot").mkdir(parents=True, exist_ok=True)
    os.chdir(root)
    subprocess.run(["pivot_root", ".", "mnt/.oldroot"], check=True)
    os.chdir("/")
    subprocess.run(["umount", "-l", "/mnt/.oldroot"], check=True)
    os.rmdir("/mnt/.oldroot")
    argv = [str(SYSTEMD), "--system", f"--unit={TARGET}", "--log-target=journal", "--log-color=no"]
    os.execve(argv[0], argv, {"container": "jobcron-live"})  # noqa: S606 (exec is the point: systemd must be PID 1)


def _api_file_systems(root: Path) -> None:
    """/proc, a read-only /sys, the cgroup hierarchies and a private /dev, as a container manager sets them up."""
    _mount("-t", "proc", "proc", root / "proc")
    _mount("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", root / "sys")
    cgroup = root / "sys/fs/cgroup"
    # in the new cgroup namespace every hierarchy's path is "/"
    hierarchies = [line.split(":", 2)[1] for line in Path("/proc/self/cgroup").read_text().splitlines()]
    if hierarchies == [""]:
        _mount("-t", "cgroup2", "-o", "nosuid,nodev,noexec", "cgroup2", cgroup)
    else:
        _mount("-t", "tmpfs", "-o", "mode=755,nosuid,nodev,noexec", "cgroup-root", cgroup)
        for controllers in hierarchies:
            if controllers == "":
                (cgroup / "unified").mkdir()
                _mount("-t", "cgroup2", "cgroup2", cgroup / "unified")
            elif controllers == "name=systemd":
                (cgroup / "systemd").mkdir()
                _mount("-t", "cgroup", "-o", "none,name=systemd", "cgroup", cgroup / "systemd")
            else:
                (cgroup / controllers).mkdir()
                _mount("-t", "cgroup", "-o", controllers, "cgroup", cgroup / controllers)
                for single in controllers.split(","):
                    if single != controllers:
                        (cgroup / single).symlink_to(controllers)
    dev = root / "dev"
    _mount("-t", "tmpfs", "-o", "mode=755,nosuid", "dev", dev)
    for name in DEVICES:
        (dev / name).touch()
        _mount("--bind", f"/dev/{name}", dev / name)
    (dev / "pts").mkdir()
    (dev / "shm").mkdir()
    _mount("-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620,gid=5", "devpts", dev / "pts")
    (dev / "ptmx").symlink_to("pts/ptmx")
    _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "shm", dev / "shm")
    (dev / "fd").symlink_to("/proc/self/fd")
    for n, name in enumerate(("stdin", "stdout", "stderr")):
        (dev / name).symlink_to(f"/proc/self/fd/{n}")
    # systemd writes to the console: a file outside the root keeps it
    console = root.parent / "scratch/console.log"
    console.touch()
    (dev / "console").touch()
    _mount("--bind", console, dev / "console")


if __name__ == "__main__":
    if sys.argv[1:2] != ["stage2"] or len(sys.argv) != 4:
        sys.exit("usage: systemd_live.py stage2 BASE CHECKOUT (run by LiveSystemd.boot)")
    stage2(Path(sys.argv[2]), Path(sys.argv[3]))
