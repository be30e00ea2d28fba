"""Torture tests: the real daemon under SIGKILL, broken definitions and a full disk."""
