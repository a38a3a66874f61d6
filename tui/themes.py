"""The console's themes: dark (default), light and high-contrast. The stylesheet
(``themes/qwarden.tcss``) uses only theme variables; the status colours are app variables
(``$status-critical`` ...) with defaults here and per-theme overrides."""

from __future__ import annotations

import os
from pathlib import Path

from textual.theme import Theme

THEMES_DIR = Path(__file__).resolve().parents[1] / "themes"
STYLESHEET = THEMES_DIR / "qwarden.tcss"

DEFAULT_THEME = "qwarden-dark"

# Status colours: severities and liveness. Defaults suit a dark background.
STATUS_DEFAULTS: dict[str, str] = {
    "status-critical": "#ff5f5f",
    "status-warning": "#ffaf00",
    "status-info": "#5fafd7",
    "status-ok": "#5fd75f",
    "status-live": "#5fd75f",
    "status-at-risk": "#ffaf00",
    "status-dead": "#ff5f5f",
    "status-idle": "#8a8a8a",
    "status-unknown": "#af87d7",
    "status-muted": "#8a8a8a",
}

QWARDEN_DARK = Theme(
    name="qwarden-dark",
    primary="#5fafd7",
    secondary="#87afaf",
    accent="#d7af5f",
    warning="#ffaf00",
    error="#ff5f5f",
    success="#5fd75f",
    foreground="#d0d0d0",
    background="#121212",
    surface="#1c1c1c",
    panel="#262626",
    dark=True,
    variables=dict(STATUS_DEFAULTS),
)

QWARDEN_LIGHT = Theme(
    name="qwarden-light",
    primary="#005f87",
    secondary="#5f5f87",
    accent="#875f00",
    warning="#af5f00",
    error="#af0000",
    success="#005f00",
    foreground="#1c1c1c",
    background="#f5f5f0",
    surface="#ebebe4",
    panel="#dcdcd2",
    dark=False,
    variables={
        "status-critical": "#af0000",
        "status-warning": "#875f00",
        "status-info": "#005f87",
        "status-ok": "#005f00",
        "status-live": "#005f00",
        "status-at-risk": "#875f00",
        "status-dead": "#af0000",
        "status-idle": "#5f5f5f",
        "status-unknown": "#5f00af",
        "status-muted": "#5f5f5f",
    },
)

# Pure black/white and the basic 16 colours: legible anywhere, 16-colour terminals too.
QWARDEN_CONTRAST = Theme(
    name="qwarden-contrast",
    primary="#ffff00",
    secondary="#00ffff",
    accent="#ff00ff",
    warning="#ffff00",
    error="#ff0000",
    success="#00ff00",
    foreground="#ffffff",
    background="#000000",
    surface="#000000",
    panel="#000000",
    dark=True,
    luminosity_spread=0.0,
    text_alpha=1.0,
    variables={
        "status-critical": "#ff0000",
        "status-warning": "#ffff00",
        "status-info": "#00ffff",
        "status-ok": "#00ff00",
        "status-live": "#00ff00",
        "status-at-risk": "#ffff00",
        "status-dead": "#ff0000",
        "status-idle": "#c0c0c0",
        "status-unknown": "#ff00ff",
        "status-muted": "#c0c0c0",
        "block-cursor-background": "#ffff00",
        "block-cursor-foreground": "#000000",
        "block-cursor-text-style": "bold",
    },
)

QWARDEN_THEMES = (QWARDEN_DARK, QWARDEN_LIGHT, QWARDEN_CONTRAST)


def choose_theme(explicit: str | None, configured: str | None, available: set[str]) -> str:
    """``--theme`` first, then ``TEXTUAL_THEME``, then the config file, then the default.
    An unknown name falls through to the next choice."""
    for name in (explicit, os.environ.get("TEXTUAL_THEME"), configured):
        if name and name in available:
            return name
    return DEFAULT_THEME
