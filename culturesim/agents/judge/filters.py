"""Filter policies over verdicts, and the judge's reliability statistics.

Dialogues, by default CLCA's exact rule: drop when (meta = bad and very confident) or
(quality = bad and very confident); keep otherwise. Thresholds on any dimension can be added
(`quality=good`, `politeness>=4`). A dialogue whose needed verdicts could not be read is
"unparseable": counted on its own and dropped or kept as `on_unparseable` says.

Instances, by default: kept when the judge says the question is well formed and the answer
plausible (`all_yes`). `confident_no` drops only when a check is "no" and very confident, the
same leniency CLCA's rule gives dialogues; it suits a weak judge whose "no" is near chance.

Reliability: position bias is the agreement between a dialogue judged as is and judged with the
participants' order swapped; two judges are compared by Cohen's kappa per dimension.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from culturesim.records import Label, Verdict

CLCA_RUBRICS = ("clca_quality", "clca_cultural", "clca_meta")
INSTANCE_RULES = ("all_yes", "confident_no")
INSTANCE_CHECKS = ("well_formed", "plausible")
_THRESHOLD = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(>=|<=|==|=|!=|>|<)\s*(.+?)\s*$")


def clca_drops(quality: Label, meta: Label) -> bool:
    """CLCA's published rule, exactly."""
    return (meta.value == "bad" and meta.confidence == "very confident") or (
        quality.value == "bad" and quality.confidence == "very confident"
    )


@dataclass(frozen=True)
class Threshold:
    dimension: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Threshold:
        match = _THRESHOLD.match(text)
        if not match:
            raise ValueError(
                f"threshold {text!r}: write DIMENSION OP VALUE, e.g. quality=good or politeness>=4"
            )
        op = "==" if match.group(2) == "=" else match.group(2)
        return cls(match.group(1), op, match.group(3))

    def passes(self, label: Label) -> bool:
        if self.op in ("==", "!="):
            equal = label.value.lower() == self.value.lower()
            return equal if self.op == "==" else not equal
        try:
            actual, wanted = float(label.value), float(self.value)
        except ValueError:
            return False
        return {
            ">=": actual >= wanted,
            "<=": actual <= wanted,
            ">": actual > wanted,
            "<": actual < wanted,
        }[self.op]


@dataclass(frozen=True)
class FilterPolicy:
    rule: str = "clca"  # or "none"
    thresholds: tuple[Threshold, ...] = ()
    on_unparseable: str = "drop"
    instance_rule: str = "all_yes"  # or "confident_no"

    def __post_init__(self) -> None:
        if self.rule not in ("clca", "none"):
            raise ValueError(f"unknown dialogue rule {self.rule!r}; use clca or none")
        if self.instance_rule not in INSTANCE_RULES:
            raise ValueError(
                f"unknown instance rule {self.instance_rule!r}; use {' or '.join(INSTANCE_RULES)}"
            )
        if self.on_unparseable not in ("drop", "keep"):
            raise ValueError("on_unparseable must be drop or keep")


@dataclass
class Decision:
    target_id: str
    status: str  # kept | dropped | unparseable
    reason: str = ""

    @property
    def keep(self) -> bool:
        return self.status == "kept"


def _labels(verdicts: Iterable[Verdict]) -> tuple[dict[str, Label], list[str]]:
    labels: dict[str, Label] = {}
    errors = []
    for verdict in verdicts:
        if verdict.parse_error:
            errors.append(f"{verdict.rubric}: {verdict.parse_error}")
        for label in verdict.labels:
            labels[label.dimension] = label
    return labels, errors


def decide_dialogues(
    verdicts: Sequence[Verdict], policy: FilterPolicy = FilterPolicy(), *, variant: str = "default"
) -> list[Decision]:
    grouped: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        if verdict.variant == variant and verdict.rubric != "culturespa_instance":
            grouped.setdefault(verdict.target_id, []).append(verdict)
    decisions = []
    for target, group in grouped.items():
        labels, errors = _labels(group)
        needed = ["quality", "meta"] if policy.rule == "clca" else []
        needed += [t.dimension for t in policy.thresholds]
        missing = [d for d in needed if d not in labels]
        if missing:
            status = "kept" if policy.on_unparseable == "keep" else "unparseable"
            reason = f"missing {', '.join(missing)}" + (f" ({'; '.join(errors)})" if errors else "")
            decisions.append(Decision(target, status, reason))
            continue
        if policy.rule == "clca" and clca_drops(labels["quality"], labels["meta"]):
            decisions.append(Decision(target, "dropped", "clca rule"))
            continue
        failed = [t for t in policy.thresholds if not t.passes(labels[t.dimension])]
        if failed:
            reason = ", ".join(f"{t.dimension}{t.op}{t.value}" for t in failed)
            decisions.append(Decision(target, "dropped", f"threshold {reason}"))
            continue
        decisions.append(Decision(target, "kept"))
    return decisions


def decide_instances(
    verdicts: Sequence[Verdict], policy: FilterPolicy = FilterPolicy()
) -> list[Decision]:
    decisions = []
    for verdict in verdicts:
        if verdict.rubric != "culturespa_instance":
            continue
        labels, _ = _labels([verdict])
        if verdict.parse_error or not set(INSTANCE_CHECKS) <= set(labels):
            status = "kept" if policy.on_unparseable == "keep" else "unparseable"
            decisions.append(Decision(verdict.target_id, status, verdict.parse_error))
            continue
        checks = [labels[name] for name in INSTANCE_CHECKS]
        if policy.instance_rule == "all_yes":
            failed = [c.dimension for c in checks if c.value != "yes"]
        else:
            failed = [
                c.dimension for c in checks if c.value == "no" and c.confidence == "very confident"
            ]
        if failed:
            decisions.append(
                Decision(verdict.target_id, "dropped", f"judge check {', '.join(failed)}")
            )
        else:
            decisions.append(Decision(verdict.target_id, "kept"))
    return decisions


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float:
    """Cohen's kappa of two raters over the same items (1 = perfect, 0 = chance)."""
    if len(first) != len(second) or not first:
        raise ValueError("kappa needs two equally long, non-empty label lists")
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    counts_a, counts_b = Counter(first), Counter(second)
    expected = sum(counts_a[k] * counts_b[k] for k in counts_a.keys() | counts_b.keys()) / (n * n)
    if expected == 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1 - expected)


@dataclass
class AgreementReport:
    dimension: str
    items: int
    agreement: float
    kappa: float


def agreement(
    verdicts: Sequence[Verdict], key_a: tuple[str, str], key_b: tuple[str, str]
) -> list[AgreementReport]:
    """Per dimension, how often verdicts (judge, variant) = key_a and key_b give the same label."""
    table: dict[tuple[str, str, str], dict[str, str]] = {}
    for verdict in verdicts:
        for label in verdict.labels:
            key = (verdict.judge, verdict.variant, label.dimension)
            table.setdefault(key, {})[verdict.target_id] = label.value
    dimensions = sorted({d for (_, _, d) in table})
    reports = []
    for dimension in dimensions:
        a = table.get((*key_a, dimension), {})
        b = table.get((*key_b, dimension), {})
        shared = sorted(a.keys() & b.keys())
        if not shared:
            continue
        first, second = [a[t] for t in shared], [b[t] for t in shared]
        agree = sum(x == y for x, y in zip(first, second, strict=True)) / len(shared)
        reports.append(AgreementReport(dimension, len(shared), agree, cohen_kappa(first, second)))
    return reports
