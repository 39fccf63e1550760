"""JSON out of model replies: balanced objects found in surrounding text, leniently loaded.

Models wrap JSON in chatter, use Python quoting, or write several objects. Every stage that
asks for JSON (question generation, adaptation, judging) reads replies the same way.
"""

from __future__ import annotations

import ast
import json
from typing import Any


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
    """The first object that loads as JSON (or a Python literal) and has `required_key`."""
    for span in json_objects(text):
        for loader in (json.loads, ast.literal_eval):
            try:
                candidate = loader(span)
            except (ValueError, SyntaxError, RecursionError, MemoryError):
                continue
            if isinstance(candidate, dict) and (
                required_key is None
                or required_key.lower() in {str(k).strip().lower() for k in candidate}
            ):
                return candidate
    return None
