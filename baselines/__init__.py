"""Routing and cascading baselines (RouteLLM-style routers, FrugalGPT, agreement cascades).

Registered through the ``shepherd_bench.strategies`` entry-point group, exactly as an external plugin
would be: nothing in ``shepherd_bench`` imports this package.
"""
