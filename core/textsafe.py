"""Untrusted text (titles, errors, notes, logs come from agents) made safe at the boundary.

Control characters and terminal escape sequences are removed so nothing an agent writes can move
the cursor, retitle the window, clear the screen or write the clipboard (OSC 52). Rendering layers
must still treat the result as plain text, never as markup.
"""

from __future__ import annotations

import re

# OSC ... (BEL | ST), DCS/SOS/PM/APC ... ST, CSI sequences, other two-byte ESC sequences.
_OSC_RE = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x9d[^\x07\x9c]*[\x07\x9c]?")
_STRING_RE = re.compile(r"\x1b[PX^_][^\x1b]*(?:\x1b\\)?|[\x90\x98\x9e\x9f][^\x9c]*\x9c?")
_CSI_RE = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]")
_ESC2_RE = re.compile(r"\x1b[@-Z\\-_ -/]*[0-~]?")
_CTRL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SGR_RE = re.compile(r"\x1b\[[0-9;:]*m")


def strip_escapes(text: str) -> str:
    text = _OSC_RE.sub("", text)
    text = _STRING_RE.sub("", text)
    text = _CSI_RE.sub("", text)
    text = _ESC2_RE.sub("", text)
    return text


def clean(text: str | None, keep_newlines: bool = True) -> str:
    """Plain printable text: escapes removed, control characters dropped (tabs become spaces)."""
    if not text:
        return ""
    if text.isprintable():  # the common case, checked in C
        return text
    text = strip_escapes(text).replace("\t", "    ").replace("\r\n", "\n").replace("\r", "\n")
    text = _CTRL_RE.sub("", text)
    if not keep_newlines:
        text = text.replace("\n", " ")
    return text


def clean_line(text: str | None, limit: int = 500) -> str:
    if text and text.isprintable():
        return text if len(text) <= limit else text[: limit - 1] + "…"
    s = clean(text, keep_newlines=False)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def diagnostic(msg: str) -> str:
    """One stderr line: problem paths and messages quote agent-chosen names, so they are
    cleaned like any untrusted text before they reach a terminal."""
    return f"qwarden: {clean_line(msg, 2000)}"


def clean_ansi_log(text: str) -> str:
    """For coloured logs: keep SGR colour codes only (for ``Text.from_ansi``), drop the rest."""
    kept: list[str] = []
    pos = 0
    for m in _SGR_RE.finditer(text):
        kept.append(clean(text[pos:m.start()]))
        kept.append(m.group(0))
        pos = m.end()
    kept.append(clean(text[pos:]))
    return "".join(kept)
