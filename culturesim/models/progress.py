"""A progress-bar column that tells how fast the model works, from a metered model's tally.

A bar that only counts dialogues or prompts hides whether the model is the bottleneck. This
column shows what the model did since the bar started: requests/s, prompt tokens/s read, and
generated tokens/s, from the live `Usage` of a `MeteredModel`.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.progress import ProgressColumn, Task
from rich.text import Text

from culturesim.models.metering import Usage


class ModelRateColumn(ProgressColumn):
    """`R req/s · P prompt tok/s · G gen tok/s` since the task started."""

    def __init__(self, usage: Callable[[], Usage]) -> None:
        super().__init__()
        self._usage = usage
        self._start = usage()

    def rates(self, elapsed: float) -> tuple[float, float, float]:
        """Requests, prompt tokens and generated tokens per second over `elapsed` seconds."""
        now = self._usage()
        return (
            (now.requests - self._start.requests) / elapsed,
            (now.prompt_tokens - self._start.prompt_tokens) / elapsed,
            (now.completion_tokens - self._start.completion_tokens) / elapsed,
        )

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if elapsed <= 0:
            return Text("")
        rates = self.rates(elapsed)
        return Text(
            f"{rates[0]:.2f} req/s · {rates[1]:.0f} prompt tok/s · {rates[2]:.1f} gen tok/s",
            style="progress.data.speed",
        )
