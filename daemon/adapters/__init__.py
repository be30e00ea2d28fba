"""Adapters: the concrete store, clock and executors behind the ports."""
