"""Run directories: a manifest plus append-only JSONL record files that a killed run resumes from.

Layout of a run directory::

    manifest.json        config, seed, package versions, git commit; written once, atomically
    <kind>.jsonl         one record a line (dialogue.jsonl, question.jsonl, ...)
    quarantine.jsonl     lines that could not be read back, kept for inspection, never dropped

Each record is written as one whole line with a single `write` on a file opened for appending,
under a lock (a thread lock plus an `flock` for other processes), then flushed and fsynced. A
process killed mid-write can leave at most one torn last line: readers skip it with a warning,
and the next writer moves it to quarantine before appending, so it never merges with a new line.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import platform
import re
import subprocess
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

from culturesim.records import RECORD_TYPES, Record

R = TypeVar("R", bound=Record)
TRACKED_PACKAGES = ("culturesim", "torch", "transformers", "peft", "trl", "datasets", "autogen")
_SECRET_KEY = re.compile(r"(api[_-]?key|password|secret|token)$", re.IGNORECASE)


def is_secret_key(key: object) -> bool:
    """Whether a config key names a credential (its value never enters a manifest)."""
    return bool(_SECRET_KEY.search(str(key)))


def complete_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the complete, non-blank lines of a JSON-lines file.

    The one torn-line policy: a last line without its newline was cut by a killed writer; it is
    skipped with a warning (the store's next write quarantines it), never read as a record.
    """
    if not path.exists():
        return
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the file ends in a newline
    for number, raw in enumerate(lines, start=1):
        if raw.strip():
            yield number, raw.decode("utf-8", errors="replace")
    if tail.strip():
        warnings.warn(
            f"{path}:{len(lines) + 1}: skipped a torn last line (a writer was killed "
            "mid-write); it will be quarantined on the next write",
            StoreWarning,
            stacklevel=3,
        )


def read_json_file(path: Path) -> Any:
    """A JSON file, or a ValueError that names it, says where it breaks and what to do."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg}); the file was "
            "cut or edited. Restore it, or remove it to start that run directory afresh"
        ) from error


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file; unreadable lines are warned about and skipped."""
    rows = []
    for number, line in complete_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            warnings.warn(
                f"{path}:{number}: unreadable line skipped ({error.msg})",
                StoreWarning,
                stacklevel=2,
            )
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


class StoreWarning(UserWarning):
    """A run file had a line that could not be read; it was skipped and quarantined."""


class ManifestMismatch(ValueError):
    """A run directory was created with a different config than the one now given."""


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def redact_secrets(config: Any) -> Any:
    """Replace values of secret-looking keys so a manifest never holds a credential."""
    if isinstance(config, dict):
        return {
            key: "<redacted>" if is_secret_key(key) else redact_secrets(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [redact_secrets(v) for v in config]
    return config


class RunStore:
    """One run directory. Safe for several threads and processes writing at once."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ manifest

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @classmethod
    def open(
        cls,
        root: str | Path,
        config: dict[str, Any] | None = None,
        seed: int = 0,
        notes: dict[str, Any] | None = None,
    ) -> RunStore:
        """Create a run directory, or reopen one made with the same config and seed.

        Reopening with a different config is refused, naming the differing fields, since mixing
        two configs' records in one run would make its lineage a lie. `notes` are written into a
        new manifest for readers (what reproducibility each model gives) and never compared.
        """
        store = cls(root)
        store.root.mkdir(parents=True, exist_ok=True)
        clean = redact_secrets(config or {})
        if store.manifest_path.exists():
            manifest = store.manifest()
            differing = sorted(
                key
                for key in set(manifest.get("config", {})) | set(clean)
                if manifest.get("config", {}).get(key) != clean.get(key)
            )
            if manifest.get("seed") != seed:
                differing.append("seed")
            if differing and not store.holds_records():
                # A first attempt that failed before writing anything locks nothing.
                store.manifest_path.unlink()
                return cls.open(root, config, seed, notes)
            if differing:
                raise ManifestMismatch(
                    f"{store.manifest_path} was written for another config "
                    f"(differs in: {', '.join(differing)}). Use a new run directory, or the "
                    "original config to resume."
                )
            return store
        manifest = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seed": seed,
            "config": clean,
            "versions": package_versions(),
            "git_commit": git_commit(),
            **(notes or {}),
        }
        staging = store.manifest_path.with_suffix(".json.tmp")
        staging.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(staging, store.manifest_path)
        return store

    def holds_records(self) -> bool:
        """Whether records were written here (or in a stage folder of a loop run): what makes
        the manifest's config binding. Logs alone (a failed first attempt) bind nothing."""
        names = {f"{kind}.jsonl" for kind in RECORD_TYPES}
        return any(
            p.name in names and p.stat().st_size > 0
            for p in [*self.root.glob("*.jsonl"), *self.root.glob("*/*.jsonl")]
        )

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            raise FileNotFoundError(
                f"{self.manifest_path} is missing: is {self.root} a run directory?"
            )
        data = read_json_file(self.manifest_path)
        if not isinstance(data, dict):
            raise ManifestMismatch(f"{self.manifest_path}: not a run manifest (a JSON object)")
        return data

    # ------------------------------------------------------------------ writing

    def path_for(self, kind: str) -> Path:
        return self.root / f"{kind}.jsonl"

    def append(self, record: Record) -> None:
        self.append_many([record])

    def append_many(self, records: Iterable[Record]) -> None:
        """Append records, grouped by kind; each line is written and fsynced whole."""
        by_kind: dict[str, list[Record]] = {}
        for record in records:
            by_kind.setdefault(record.kind, []).append(record)
        for kind, group in by_kind.items():
            self._append_lines(self.path_for(kind), [r.to_json() for r in group])

    def append_json(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        """Append plain JSON rows (logs, usage) to `<name>.jsonl` with the same guarantees."""
        self._append_lines(
            self.root / f"{name}.jsonl", [json.dumps(r, sort_keys=True) for r in rows]
        )

    def _append_lines(self, path: Path, lines: list[str]) -> None:
        if not lines:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._repair_torn_tail(fd, path)
                for line in lines:
                    if "\n" in line:
                        raise ValueError("a record serialised to more than one line")
                    os.write(fd, (line + "\n").encode("utf-8"))
                os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _repair_torn_tail(self, fd: int, path: Path) -> None:
        """If the file does not end in a newline, move the torn last line to quarantine."""
        size = os.fstat(fd).st_size
        if size == 0:
            return
        if os.pread(fd, 1, size - 1) == b"\n":
            return
        start = size
        chunk = 4096
        while start > 0:
            begin = max(0, start - chunk)
            data = os.pread(fd, start - begin, begin)
            newline = data.rfind(b"\n")
            if newline >= 0:
                start = begin + newline + 1
                break
            start = begin
        torn = os.pread(fd, size - start, start).decode("utf-8", errors="replace")
        self._quarantine(path, torn, "torn last line (a writer was killed mid-write)")
        os.ftruncate(fd, start)

    def _quarantine(
        self, path: Path, line: str, reason: str, number: int | None = None, warn: bool = True
    ) -> None:
        if warn:
            warnings.warn(
                f"{path.name}: {reason}; moved to quarantine.jsonl", StoreWarning, stacklevel=3
            )
        row: dict[str, Any] = {"file": path.name, "reason": reason, "line": line}
        if number is not None:
            row["number"] = number
        with open(self.root / "quarantine.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def quarantine_lines(self, kind: str, bad: Mapping[int, str]) -> int:
        """Move the numbered lines (number -> why) of `<kind>.jsonl` to quarantine.jsonl and
        rewrite the file without them, under the lock every writer takes, so no append is lost
        in between. Returns how many lines were moved."""
        path = self.path_for(kind)
        if not bad or not path.exists():
            return 0
        with self._lock:
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                raw = os.pread(fd, os.fstat(fd).st_size, 0).split(b"\n")
                kept = []
                for number, line in enumerate(raw, start=1):
                    if number in bad:
                        text = line.decode("utf-8", errors="replace")
                        self._quarantine(path, text, bad[number], number, warn=False)
                    elif line.strip():
                        kept.append(line + b"\n")
                staging = path.with_suffix(".jsonl.tmp")
                staging.write_bytes(b"".join(kept))
                os.replace(staging, path)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        return len(bad)

    # ------------------------------------------------------------------ reading

    def iter_lines(self, kind: str) -> Iterator[tuple[int, str]]:
        """(line number, text) of complete lines; a torn last line is skipped with a warning."""
        yield from complete_lines(self.path_for(kind))

    def read(self, kind: str | type[R]) -> list[Any]:
        """All valid records of a kind, first occurrence of each id; bad lines are warned about."""
        record_type: type[Record] = RECORD_TYPES[kind] if isinstance(kind, str) else kind
        path = self.path_for(record_type.kind)
        seen: set[str] = set()
        records: list[Record] = []
        for number, line in self.iter_lines(record_type.kind):
            try:
                record = record_type.from_json(line)
            except ValueError as error:
                first = str(error).splitlines()[0]
                warnings.warn(
                    f"{path}:{number}: unreadable record skipped ({first})",
                    StoreWarning,
                    stacklevel=2,
                )
                continue
            if record.id in seen:
                continue
            seen.add(record.id)
            records.append(record)
        return records

    def read_json(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.path_for(name))

    def done_ids(self, kind: str | type[Record]) -> set[str]:
        """Ids already written for a kind: what a resumed stage skips."""
        return {record.id for record in self.read(kind)}


# ------------------------------------------------------------------ derived files


def json_safe(data: Any) -> Any:
    """The data with NaN and infinities as None, since JSON has no such numbers."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(v) for v in data]
    if hasattr(data, "item") and callable(data.item):  # numpy scalars
        return json_safe(data.item())
    return data


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write a derived JSON file whole or not at all (a kill never leaves half a file); NaN is
    written as null, so every reader can parse it."""
    return write_text_atomic(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def write_text_atomic(path: Path, text: str) -> Path:
    """Write text to a temporary sibling, flush it to disk, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    with staging.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, path)
    return path
