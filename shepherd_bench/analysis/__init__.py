"""Analysis: pure functions from run folders (or per-query arrays) to tables, plots and the leaderboard.

- ``bootstrap``: paired, vectorised bootstrap CIs for accuracy, cost and differences between strategies.
- ``matched``: frontiers (concave hull / Pareto staircase), cost at matched accuracy and its bootstrap,
  ACE, APGR, CPT, cost and savings ratios.
- ``runs``: run folders -> pandas frames priced at analysis time, paired on common query ids.
- ``report``: ``build_report`` for ``shepherd-bench report`` (md / csv / json, PNG plots).
- ``leaderboard``: ``write_leaderboard`` for ``shepherd-bench leaderboard``; ``export_run`` for committing.

Nothing is imported here, so importing the package stays cheap; matplotlib loads only when plotting.
"""
