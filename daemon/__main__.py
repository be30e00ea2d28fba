"""`python -m daemon` is `tickd`."""

from daemon.cli import main

raise SystemExit(main())
