"""A definitions module that fails to import: the others must still run."""

from daemon.definitions import job


@job
def in_broken_module(context: object) -> None:
    pass


raise RuntimeError("this definitions module is broken on purpose")
