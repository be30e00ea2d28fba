"""The in-process CLI tests load definitions; keep their imports from leaking."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.loading import MODULE_PREFIX


@pytest.fixture(autouse=True)
def _isolate_imports(tmp_path: Path) -> Iterator[None]:
    """In-process loads put the definitions dir on sys.path and its modules in sys.modules;
    take them out again, so a later test's `jobs.py` is not shadowed by this one's."""
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if name.startswith(MODULE_PREFIX) or file.startswith(str(tmp_path)):
            del sys.modules[name]
