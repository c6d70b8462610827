"""Results you can compare: the results store (SQLite), comparison, the HTML report and energy meters.

Run directories stay the source of truth; the store is an index over them that ``mlbench results reindex``
rebuilds at any time.
"""
