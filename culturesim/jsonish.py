"""JSON out of model replies: balanced objects found in surrounding text, leniently loaded.

Models wrap JSON in chatter, use Python quoting, or write several objects. Every stage that
asks for JSON (question generation, adaptation, judging) reads replies the same way.

Loading is the `json_repair` library's: it reads JSON as models write it (Python quotes and
literals, trailing commas, unquoted keys, comments). Finding the objects is ours: only complete
{...} spans count, because json_repair would also close an object the text never closes, and a
model that continues a `{"Question": "` prefill with a refusal has written no JSON at all.
"""

from __future__ import annotations

from typing import Any

from json_repair import loads


def json_objects(text: str) -> list[str]:
    """Balanced {...} spans in a text, outermost first (string-aware)."""
    spans, depth, start, quote, escaped = [], 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch in "\"'" and depth > 0:
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


def first_json_object(text: str, required_key: str | None = None) -> dict[str, Any] | None:
    """The first complete object that loads, repaired where needed, and has `required_key`
    (matched ignoring case and surrounding spaces) when one is asked for."""
    for span in json_objects(text):
        try:
            candidate = loads(span)
        except (ValueError, RecursionError):  # json_repair gives up on absurdly deep nesting
            continue
        if isinstance(candidate, dict) and (
            required_key is None
            or required_key.lower() in {str(k).strip().lower() for k in candidate}
        ):
            return candidate
    return None
