"""Fixtures every test directory shares."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """aiosqlite (and asyncpg, later) are asyncio-only, so tests run on asyncio."""
    return "asyncio"
