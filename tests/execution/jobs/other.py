"""A good module next to a broken one."""

from typing import Any

from daemon.definitions import job


@job
def from_other_module(context: Any) -> None:
    print("other module ok")
