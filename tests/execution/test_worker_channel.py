"""The executor's end of a worker's control socket, against a plain socket pair."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import anyio
import pytest

from daemon.adapters import worker_channel
from daemon.adapters.worker_channel import MessageTooLong, WorkerChannel

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pair() -> AsyncIterator[tuple[WorkerChannel, socket.socket]]:
    ours, theirs = socket.socketpair()
    channel = await WorkerChannel.open(ours, max_line=64)
    try:
        yield channel, theirs
    finally:
        channel.close()
        theirs.close()


async def test_lines_split_across_writes_arrive_whole_and_in_order(
    pair: tuple[WorkerChannel, socket.socket],
) -> None:
    channel, theirs = pair
    theirs.sendall(b'{"a": 1}\n{"b"')
    with anyio.fail_after(2):
        assert await channel.receive() == b'{"a": 1}'
        theirs.sendall(b": 2}\n\n")
        assert await channel.receive() == b'{"b": 2}'
        assert await channel.receive() == b""


async def test_the_end_of_the_socket_is_none_and_a_partial_line_is_dropped(
    pair: tuple[WorkerChannel, socket.socket],
) -> None:
    channel, theirs = pair
    theirs.sendall(b"last\nno newline")
    theirs.close()
    with anyio.fail_after(2):
        assert await channel.receive() == b"last"
        assert await channel.receive() is None
        assert await channel.receive() is None
    with pytest.raises(BrokenPipeError):
        channel.send(b"too late\n")


async def test_a_line_over_the_limit_is_an_error(
    pair: tuple[WorkerChannel, socket.socket],
) -> None:
    channel, theirs = pair
    theirs.sendall(b"x" * 100)
    with anyio.fail_after(2), pytest.raises(MessageTooLong):
        await channel.receive()


async def test_sent_messages_reach_the_other_end(
    pair: tuple[WorkerChannel, socket.socket],
) -> None:
    channel, theirs = pair
    channel.send(b'{"op": "run"}\n')
    theirs.settimeout(2)
    assert theirs.recv(100) == b'{"op": "run"}\n'


async def test_reading_pauses_while_too_much_waits_and_resumes_as_it_is_taken(
    pair: tuple[WorkerChannel, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    channel, theirs = pair
    monkeypatch.setattr(worker_channel, "HIGH_WATER", 100)
    monkeypatch.setattr(worker_channel, "LOW_WATER", 25)
    theirs.sendall(b"0123456789\n" * 20)  # 220 bytes: over the high-water mark
    with anyio.fail_after(2):
        assert await channel.receive() == b"0123456789"
        assert channel._paused
        for _ in range(19):
            assert await channel.receive() == b"0123456789"
        assert not channel._paused
        theirs.sendall(b"more\n")
        assert await channel.receive() == b"more"
