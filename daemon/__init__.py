"""tickd: cron schedules, sensors and jobs for Python, run exactly once."""
