"""`culturesim runs verify RUN_DIR`: check a run directory's integrity before trusting it.

Checked in the run and in every stage folder inside it (a `culturesim run` directory):
the manifest (present, readable, no unredacted secret), every record line (JSON, a valid
record, an id that matches its content), duplicates (the same id twice: harmless if the lines
are identical, a conflict if not), and lineage (every reference points at a record that exists:
dialogue -> episode, answer -> question, instance -> question and answers, verdict -> target).
With `quarantine=True`, unreadable lines are moved to quarantine.jsonl and the file is
rewritten atomically, so later readers stop warning about them; nothing is deleted.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from culturesim.records import RECORD_TYPES, Record
from culturesim.store import RunStore, is_secret_key, read_jsonl


@dataclass(frozen=True)
class Problem:
    run: str
    file: str
    line: int | None
    kind: str
    message: str


@dataclass
class RunCheck:
    run: Path
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    quarantined: int = 0

    def add(self, file: str, line: int | None, kind: str, message: str) -> None:
        self.problems.append(Problem(str(self.run), file, line, kind, message))


def run_dirs(root: Path) -> list[Path]:
    """The run itself and the stage folders inside it that are runs of their own."""
    return sorted({path.parent for path in root.rglob("manifest.json")})


def _secrets_left(value: Any, path: str = "") -> list[str]:
    leaks = []
    if isinstance(value, dict):
        for key, inner in value.items():
            where = f"{path}.{key}" if path else str(key)
            if is_secret_key(key) and inner not in ("<redacted>", None, ""):
                leaks.append(where)
            leaks += _secrets_left(inner, where)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            leaks += _secrets_left(inner, f"{path}[{index}]")
    return leaks


def _check_manifest(check: RunCheck) -> None:
    try:
        manifest = RunStore(check.run).manifest()
    except (OSError, ValueError) as error:
        check.add("manifest.json", None, "manifest", str(error))
        return
    for key in ("created", "seed", "config", "versions"):
        if key not in manifest:
            check.add("manifest.json", None, "manifest", f"missing field {key!r}")
    for where in _secrets_left(manifest.get("config", {})):
        check.add("manifest.json", None, "secret", f"config.{where} holds an unredacted secret")


def _read_records(check: RunCheck, kind: str, quarantine: bool) -> dict[str, Record]:
    record_type = RECORD_TYPES[kind]
    path = check.run / f"{kind}.jsonl"
    records: dict[str, Record] = {}
    first_line: dict[str, tuple[int, str]] = {}
    bad: list[tuple[int, str, str]] = []
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()
    if tail.strip():
        lines.append(tail)
        check.add(path.name, len(lines), "torn", "the last line has no newline (a killed writer)")
    for number, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", errors="replace")
        if not text.strip():
            continue
        try:
            record = record_type.from_json(text)
        except ValueError as error:
            reason = str(error).splitlines()[0]
            for detail in str(error).splitlines()[1:]:
                if "does not match its content" in detail or "Invalid JSON" in detail:
                    reason = detail.strip()
                    break
            check.add(path.name, number, "corrupt", reason)
            bad.append((number, text, reason))
            continue
        check.counts[kind] += 1
        if record.id in first_line:
            earlier, earlier_text = first_line[record.id]
            if json.loads(earlier_text) == json.loads(text):
                check.add(path.name, number, "duplicate", f"{record.id} repeats line {earlier}")
            else:
                check.add(path.name, number, "conflict", f"{record.id} differs from line {earlier}")
            continue
        first_line[record.id] = (number, text)
        records[record.id] = record
    if quarantine and bad:
        check.quarantined += RunStore(check.run).quarantine_lines(
            kind, {number: reason for number, _, reason in bad}
        )
    return records


def _check_lineage(check: RunCheck, records: dict[str, dict[str, Record]]) -> None:
    def has(kind: str, record_id: str) -> bool:
        return record_id in records.get(kind, {})

    for dialogue in records.get("dialogue", {}).values():
        if not has("episode", dialogue.episode_id):  # type: ignore[attr-defined]
            check.add("dialogue.jsonl", None, "lineage", f"{dialogue.id}: episode missing")
    for answer in records.get("answer", {}).values():
        question_id = answer.question_id  # type: ignore[attr-defined]
        if not question_id.startswith("survey:") and not has("question", question_id):
            check.add("answer.jsonl", None, "lineage", f"{answer.id}: question missing")
    for instance in records.get("instance", {}).values():
        for kind, ref in (
            ("question", instance.question_id),  # type: ignore[attr-defined]
            ("answer", instance.aware_answer_id),  # type: ignore[attr-defined]
            ("answer", instance.unaware_answer_id),  # type: ignore[attr-defined]
        ):
            if not has(kind, ref):
                check.add("instance.jsonl", None, "lineage", f"{instance.id}: {kind} {ref} missing")
    targets = set(records.get("dialogue", {})) | set(records.get("instance", {}))
    for verdict in records.get("verdict", {}).values():
        if verdict.target_id not in targets:  # type: ignore[attr-defined]
            check.add("verdict.jsonl", None, "lineage", f"{verdict.id}: target missing")


def verify_run(run: Path, *, quarantine: bool = False) -> RunCheck:
    check = RunCheck(run)
    _check_manifest(check)
    records: dict[str, dict[str, Record]] = {}
    for kind in RECORD_TYPES:
        if (run / f"{kind}.jsonl").exists():
            records[kind] = _read_records(check, kind, quarantine)
    _check_lineage(check, records)
    failed = run / "failed.jsonl"
    if failed.exists():
        listed = {str(row.get("dialogue_id")) for row in read_jsonl(failed)}
        check.counts["failed (not retried)"] = len(listed - set(records.get("dialogue", {})))
    aside = run / "quarantine.jsonl"
    if aside.exists():
        check.counts["quarantined lines"] = sum(
            1 for line in aside.read_text().splitlines() if line
        )
    return check
