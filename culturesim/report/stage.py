"""The report stage: the run's static HTML report, from whatever the run directory holds."""

from __future__ import annotations

from culturesim.context import LoopPlan, RunContext, Stage, StageResult, StageSection


class ReportSection(StageSection):
    """The report has no settings yet; the section keeps every stage's door the same shape."""


def run(section: ReportSection, ctx: RunContext) -> StageResult:
    from culturesim.report.build import build_report

    index = build_report(ctx.layout.root)
    return StageResult(counts={"index": str(index)}, written=(index,))


def plan(section: ReportSection, loop: LoopPlan) -> str:
    return f"static HTML at {loop.ctx.layout.report / 'index.html'}"


STAGE = Stage("report", ReportSection, run, plan, always=True)
