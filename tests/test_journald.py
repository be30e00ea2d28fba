"""Native journald fields: detection by $JOURNAL_STREAM, the wire format, the processor."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest
import structlog

from daemon.adapters.journald import JournalProcessor, encode, field_name, stdout_is_journal


def test_journal_stream_is_detected_by_device_and_inode(tmp_path: Path) -> None:
    with open(tmp_path / "out", "w") as f:
        st = os.fstat(f.fileno())
        assert stdout_is_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not stdout_is_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not stdout_is_journal(f, {})


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("instigator", "INSTIGATOR"),
        ("run_id", "RUN_ID"),
        ("lag_s", "LAG_S"),
        ("_private", "PRIVATE"),
        ("2fast", None),
        ("a.b", "A_B"),
    ],
)
def test_field_names(key: str, name: str | None) -> None:
    assert field_name(key) == name


def test_values_with_newlines_use_the_binary_form() -> None:
    data = encode({"A": "one", "B": "two\nlines"})
    assert data.startswith(b"A=one\nB\n")
    assert data[8:16] == struct.pack("<Q", 9)
    assert data[16:] == b"two\nlines\n"


def test_processor_sends_fields_and_drops_the_stdout_line(tmp_path: Path) -> None:
    address = str(tmp_path / "journal.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
        journal.bind(address)
        processor = JournalProcessor(address)
        event = {
            "event": "tick.completed",
            "level": "info",
            "instigator": "daily_report",
            "runs_created": 1,
            "run_ids": ["x"],
        }
        with pytest.raises(structlog.DropEvent):
            processor(None, "info", event)
        processor.close()
        lines = journal.recv(65536).decode().splitlines()
    assert "INSTIGATOR=daily_report" in lines
    assert "TICKD_EVENT=tick.completed" in lines
    assert "PRIORITY=6" in lines and "SYSLOG_IDENTIFIER=tickd" in lines
    assert any(line.startswith("MESSAGE={") for line in lines)
    assert not any(line.startswith("RUN_IDS=") for line in lines)  # lists stay in MESSAGE


def test_unreachable_journal_falls_back_to_stdout(tmp_path: Path) -> None:
    processor = JournalProcessor(str(tmp_path / "missing.sock"))
    event = {"event": "x", "level": "info"}
    assert processor(None, "info", event) is event
    processor.close()
