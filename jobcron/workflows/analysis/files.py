"""Find, open and decode the job's file: inside the configured root, a regular text file, within the limits."""

from __future__ import annotations

import codecs
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from jobcron.errors import InvalidJob, PermanentError

CHUNK_BYTES = 1 << 20
# Text that is not UTF-8 is read as Latin-1; these control characters appear in neither real UTF-8
# text nor real Latin-1 text, so finding one means the file is neither (or not text at all).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook is one: export the sheet as CSV)"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.xls: export the sheet as CSV)"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ", "an xz archive"),
    (b"7z\xbc\xaf", "a 7-zip archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
)


def _latin1_for_undefined(exc: UnicodeError) -> tuple[str, int]:
    # the five bytes Windows-1252 leaves undefined keep their Latin-1 meaning
    if isinstance(exc, UnicodeDecodeError):
        return exc.object[exc.start : exc.end].decode("latin-1"), exc.end
    raise exc


codecs.register_error("jobcron.latin1", _latin1_for_undefined)


def resolve_root(root: str | None) -> Path:
    """The configured root folder, absolute; a relative root is taken from the daemon's working directory."""
    if root is None or not root.strip():
        raise PermanentError(
            "analysis: job_processing.file_root is not set; the analysis workflow reads files only "
            "inside that folder"
        )
    real = Path(os.path.realpath(Path.cwd() / root))
    if not real.is_dir():
        raise PermanentError(f"analysis: job_processing.file_root {root!r} is not a folder ({real})")
    return real


def resolve_file(root: Path, file_path: str) -> Path:
    """The file's real path (symlinks followed); InvalidJob when it lies outside the root."""
    if not file_path or "\x00" in file_path:
        raise InvalidJob(f"analysis: file_path {file_path!r} is not a usable path")
    real = Path(os.path.realpath(root / file_path))  # an absolute file_path replaces the root
    if not real.is_relative_to(root):
        raise InvalidJob(f"analysis: file_path {file_path!r} resolves outside job_processing.file_root")
    return real


def open_file(real: Path, root: Path, shown: str, max_bytes: int) -> tuple[BinaryIO, int]:
    """Open a regular file for reading, checking what was actually opened; returns it with its size."""
    flags = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(real, flags)  # O_NONBLOCK: a FIFO must not hang the daemon
    except FileNotFoundError:
        raise InvalidJob(f"analysis: file not found: {shown}") from None
    except PermissionError:
        raise PermanentError(f"analysis: permission denied reading {shown}") from None
    except OSError as exc:
        raise PermanentError(f"analysis: cannot open {shown}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidJob(f"analysis: {shown} is not a regular file")
        # a folder swapped for a symlink between resolving and opening: check what we really opened
        opened = f"/proc/self/fd/{fd}"
        if os.path.exists(opened) and not Path(os.path.realpath(opened)).is_relative_to(root):
            raise InvalidJob(f"analysis: file_path {shown!r} resolves outside job_processing.file_root")
        if st.st_size == 0:
            raise InvalidJob(f"analysis: {shown} is empty")
        if st.st_size > max_bytes:
            raise InvalidJob(
                f"analysis: {shown} is {st.st_size} bytes, over job_processing.analysis_max_bytes ({max_bytes})"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0), st.st_size
    except BaseException:
        os.close(fd)
        raise


class TextReader:
    """Decodes a byte stream chunk by chunk: UTF-8 (BOM or not), UTF-16 with a BOM, else Latin-1."""

    def __init__(self, raw: BinaryIO, shown: str, max_bytes: int) -> None:
        self.raw = raw
        self.shown = shown
        self.max_bytes = max_bytes
        self.encoding = "utf-8"
        self.bom = False
        self.fallback_offset: int | None = None  # byte where UTF-8 stopped making sense
        self.bytes_read = 0
        self.lines_before = 0  # newlines in the chunks already handed out
        self._offset = 0  # bytes decoded so far
        self._pending = b""
        self._utf16: codecs.IncrementalDecoder | None = None
        self.first = self._read()
        self._sniff(self.first)

    def _read(self) -> bytes:
        data = self.raw.read(CHUNK_BYTES) or b""
        self.bytes_read += len(data)
        if self.bytes_read > self.max_bytes:  # the file grew while we read it
            raise InvalidJob(
                f"analysis: {self.shown} grew past job_processing.analysis_max_bytes ({self.max_bytes})"
            )
        return data

    def _sniff(self, head: bytes) -> None:
        for magic, what in _MAGIC:
            if head.startswith(magic):
                raise InvalidJob(f"analysis: {self.shown} is binary: {what}, not CSV, TSV or JSON text")
        if head.startswith(codecs.BOM_UTF8):
            self.bom = True
            self.first = head[len(codecs.BOM_UTF8) :]
            self._offset = len(codecs.BOM_UTF8)
        elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            self.bom = True
            self.encoding = "utf-16"
            self._utf16 = codecs.getincrementaldecoder("utf-16")("strict")
        elif b"\x00" in head[:65536]:
            raise InvalidJob(
                f"analysis: {self.shown} is binary (it contains NUL bytes), not CSV, TSV or JSON text"
            )

    def chunks(self) -> Iterator[str]:
        """Decoded text, about a megabyte at a time; the file is read once, front to back."""
        data = self.first
        self.first = b""
        while data:
            text = self._decode(data, final=False)
            if text:
                yield self._checked(text)
            data = self._read()
        text = self._decode(b"", final=True)
        if text:
            yield self._checked(text)

    def _decode(self, data: bytes, *, final: bool) -> str:
        if self._utf16 is not None:
            try:
                return self._utf16.decode(data, final)
            except UnicodeDecodeError:
                raise InvalidJob(f"analysis: {self.shown} is not valid UTF-16 text despite its BOM") from None
        buf = self._pending + data
        if self.fallback_offset is not None:
            self._pending = b""
            return buf.decode("cp1252", "jobcron.latin1")
        try:
            text, used = codecs.utf_8_decode(buf, "strict", final)
        except UnicodeDecodeError as exc:
            self.fallback_offset = self._offset + exc.start
            self.encoding = "latin-1"
            head = buf[: exc.start].decode("utf-8")
            text, used = head + buf[exc.start :].decode("cp1252", "jobcron.latin1"), len(buf)
        self._pending = buf[used:]
        self._offset += used
        return text

    def _checked(self, text: str) -> str:
        m = _CONTROL.search(text)
        if m is not None:
            line = self.lines_before + text.count("\n", 0, m.start()) + 1
            code = f"0x{ord(m.group()):02x}"
            if self.fallback_offset is not None:
                raise InvalidJob(
                    f"analysis: {self.shown} is neither UTF-8 nor Latin-1 text "
                    f"(control byte {code} on line {line}; not UTF-8 from byte {self.fallback_offset})"
                )
            raise InvalidJob(f"analysis: {self.shown} is binary (control byte {code} on line {line})")
        self.lines_before += text.count("\n")
        return text

    def describe(self) -> dict[str, object]:
        """How the text was decoded, for the result."""
        out: dict[str, object] = {"encoding": self.encoding, "bom": self.bom}
        if self.fallback_offset is not None:
            out["encoding_note"] = (
                f"not valid UTF-8 from byte {self.fallback_offset}: read as Latin-1 "
                "(bytes 0x80-0x9f as their Windows-1252 characters)"
            )
        return out
