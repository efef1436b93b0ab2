"""The research flow, one way: build a hint grid (``grid``), replay policies on it (``replay``, with the
shared outcome primitives in ``outcomes`` and the paper's claims in ``claims``), export replayed
policies as run folders (``export``). The leaderboard (``shepherd_bench.analysis.leaderboard``) reads
what this package produces; nothing here imports the CLI.
"""
