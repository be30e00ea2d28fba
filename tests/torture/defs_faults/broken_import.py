"""A definition module that fails to import: the others must still load."""

from __future__ import annotations

raise RuntimeError("torture: this definitions module is broken on purpose")
