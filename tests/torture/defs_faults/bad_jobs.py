"""Jobs that raise, hang past their timeout, exit, segfault and eat memory without bound,
each in the process executor; the test triggers each once."""

from __future__ import annotations

import os
import resource
import signal
import time

from daemon import job

MEMORY_LIMIT = 256 * 1024 * 1024


@job
def raising_job(context):  # type: ignore[no-untyped-def]
    raise ValueError("torture: the job's input is malformed")


@job(timeout=1)
def hanging_job(context):  # type: ignore[no-untyped-def]
    time.sleep(30)


@job
def exiting_job(context):  # type: ignore[no-untyped-def]
    os._exit(3)


@job
def segfaulting_job(context):  # type: ignore[no-untyped-def]
    os.kill(os.getpid(), signal.SIGSEGV)


@job
def memory_hog_job(context):  # type: ignore[no-untyped-def]
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    hoard = []
    while True:  # until MemoryError, or the kernel kills the process
        hoard.append(bytearray(16 * 1024 * 1024))
