"""Text normalisation shared by fitting and scoring: the same words always give the same features."""

from __future__ import annotations

import re

_URL = re.compile(r"https?://\S+|www\.\S+")
_HANDLE = re.compile(r"@\w+")  # @mentions name the addressee, not the matter
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")


def clean(text: str | None) -> str:
    """Lowercase, links and @handles removed, digit runs as 0, whitespace collapsed."""
    if not text:
        return ""
    out = _URL.sub(" ", text.lower())
    out = _HANDLE.sub(" ", out)
    out = _DIGITS.sub("0", out)
    return _SPACE.sub(" ", out).strip()
