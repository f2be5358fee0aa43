"""Names the user types (emotions, people): matched case-insensitively, with close-match suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from .errors import InputError


def resolve_name(value: str, choices: Iterable[str], what: str, none_hint: str = "none") -> str:
    """The entry of ``choices`` that ``value`` names: exact, else the one equal ignoring case and spaces.

    Anything else raises :class:`InputError` with the closest choices (difflib) and the full list,
    e.g. ``unknown emotion 'hapy' (did you mean 'happy'?); valid: angry, disgust, ...``.
    """
    choices = [c for c in choices if c]
    if value in choices:
        return value
    key = value.strip().casefold()
    folded = [c for c in choices if c.casefold() == key]
    if len(folded) == 1:
        return folded[0]
    by_key = {c.casefold(): c for c in choices}
    close = [by_key[k] for k in difflib.get_close_matches(key, list(by_key), n=3, cutoff=0.6)] or folded
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    raise InputError(f"unknown {what} '{value}'{hint}; valid: {', '.join(choices) if choices else none_hint}")
