"""The pure core: cron and DST math, partitions, run and tick values, dedup and limits.

Nothing here performs I/O, reads a clock, awaits or logs; every function takes `now`
(or the times it reasons about) as an argument.
"""
