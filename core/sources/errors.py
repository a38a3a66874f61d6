"""Errors every queue source raises."""

from __future__ import annotations


class SourceError(Exception):
    """The queue cannot be read at all (exit 3): missing, locked, corrupt or foreign."""
