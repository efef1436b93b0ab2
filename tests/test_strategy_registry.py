"""Strategy registry: built-ins, baselines through the entry point, an external plugin, typed -S params."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shepherd_bench import strategies
from shepherd_bench.backends.base import Message
from shepherd_bench.registry import UnknownName
from shepherd_bench.strategies.base import ParamError, Query
from tests.scripted import pair

PLUGIN = Path(__file__).parent / "plugin_pkg"
ALL = {"slm", "llm", "shepherd", "route-random", "route-knn", "route-logistic",
       "cascade-logprob", "cascade-agreement", "cascade-frugal"}


def test_builtins_and_baselines_are_registered() -> None:
    assert ALL <= set(strategies.strategy_names())
    assert strategies.get_strategy("route-knn").__module__ == "baselines.routing"  # came in as a plugin would


def test_describe_all_lists_kind_and_typed_params() -> None:
    by_name = {d["name"]: d for d in strategies.describe_all()}
    assert {by_name[n]["kind"] for n in ("route-random", "route-knn")} == {"route"}
    assert by_name["cascade-logprob"]["kind"] == "cascade"
    params = {p["name"]: p for p in by_name["shepherd"]["params"]}
    assert params["hint_tokens"]["type"] == "int" and params["hint_tokens"]["default"] == 32
    assert params["mode"]["choices"] == ["prefill", "in_prompt"]
    assert all(p["help"] for p in params.values())


def test_unknown_strategy_suggests_a_name() -> None:
    with pytest.raises(UnknownName, match="did you mean 'shepherd'"):
        strategies.make_strategy("shepard", {})


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ParamError, match=r"no parameter 'hint'; valid keys: hint_tokens, hint_fraction"):
        strategies.make_strategy("shepherd", {"hint": "3"})


@pytest.mark.parametrize(("name", "params", "match"), [
    ("shepherd", {"hint_tokens": "many"}, "hint_tokens='many' is not a valid int"),
    ("shepherd", {"hint_fraction": "x"}, "not a valid float"),
    ("shepherd", {"mode": "suffix"}, "must be one of prefill, in_prompt"),
    ("shepherd", {"hint_tokens": "8", "hint_fraction": "0.2"}, "not both"),
    ("shepherd", {"hint_fraction": "1.5"}, "within"),
    ("shepherd", {"policy": "predicted"}, r"needs -S predictor=PATH, built by the grid/predictor commands"),
    ("shepherd", {"steps": "0,64,16"}, "must grow strictly"),
    ("shepherd", {"steps": "0,full,64"}, "'full' only last"),
    ("route-random", {"threshold": "high"}, "not a valid float"),
    ("route-knn", {}, "needs -S labels=PATH"),
    ("cascade-agreement", {"samples": "1"}, "samples must be >= 2"),
    ("cascade-frugal", {}, "needs -S labels=PATH"),
])
def test_bad_values_name_the_fix(name: str, params: dict[str, str], match: str) -> None:
    with pytest.raises(ParamError, match=match):
        strategies.make_strategy(name, params)


def test_params_are_typed() -> None:
    s = strategies.make_strategy("shepherd", {"hint_tokens": "16", "mode": "in_prompt"})
    assert s.describe()["params"]["hint_tokens"] == 16


def plugin_entry_points() -> dict[str, str]:
    """The plugin's ``shepherd_bench.strategies`` entry points, read from its pyproject (no tomllib on 3.10)."""
    text = (PLUGIN / "pyproject.toml").read_text()
    section = text.split('[project.entry-points."shepherd_bench.strategies"]', 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^([\w.-]+)\s*=\s*"([^"]+)"', section, re.MULTILINE))


def _install_dist_info(site: Path, eps: dict[str, str]) -> None:
    """The metadata ``pip install`` would write for tests/plugin_pkg (entry points from its pyproject)."""
    info = site / "sb_echo_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sb-echo-plugin\nVersion: 0.1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in eps.items())
    (info / "entry_points.txt").write_text(f"[shepherd_bench.strategies]\n{lines}\n")


def test_external_plugin_registers_through_the_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    eps = plugin_entry_points()
    eps["shepherd"] = "sb_echo_plugin:EchoSLM"  # a clash: ignored with a warning, the built-in wins
    eps["plugin-broken"] = "sb_echo_plugin_missing:Nope"  # fails to load: warns, never takes the CLI down
    _install_dist_info(tmp_path, eps)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.setattr(strategies, "REGISTRY", strategies.build_registry())

    with pytest.warns(UserWarning, match="'shepherd'.*already taken"):
        names = strategies.strategy_names()
    assert "plugin-echo" in names
    assert strategies.get_strategy("shepherd").__module__ == "shepherd_bench.strategies.shepherd"
    with pytest.warns(UserWarning, match="plugin-broken"):
        described = {d["name"]: d for d in strategies.describe_all()}
    assert described["plugin-echo"]["params"][0]["name"] == "suffix"

    s = strategies.make_strategy("plugin-echo", {"suffix": "!"})
    models, small, _ = pair(lambda r: "hello", lambda r: "unused")
    q = Query("q0", (Message("user", "hi"),), max_tokens=8)
    (a,) = s.solve([q], models)
    assert a.answer == "hello!" and len(small.requests) == 1


def test_a_plugin_router_gets_leaderboard_rows_from_the_published_grid_without_a_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    """The contributor's path: install a package whose router implements ``replay_scores`` and regenerate
    the leaderboard: the router is replayed on the published HumanEval grid without being listed in
    ``leaderboard.yaml``, its rows appear, and no model is built."""
    import shutil

    from shepherd_bench import backends as backends_mod
    from shepherd_bench.analysis.leaderboard import write_leaderboard

    _install_dist_info(tmp_path, plugin_entry_points())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.setattr(strategies, "REGISTRY", strategies.build_registry())
    monkeypatch.setenv("SHEPHERD_BENCH_DATA", str(data_dir))

    def no_model(*a: object, **k: object) -> None:
        raise AssertionError("a model was built")

    monkeypatch.setattr(backends_mod, "make_backend", no_model)
    committed = Path(__file__).resolve().parent.parent / "leaderboard"
    root = tmp_path / "leaderboard"
    (root / "grids").mkdir(parents=True)
    shutil.copytree(committed / "grids" / "humaneval", root / "grids" / "humaneval")
    shutil.copy(committed / "prices.json", root / "prices.json")
    (root / "leaderboard.yaml").write_text("policies: [slm, llm]\ntasks:\n  humaneval: {}\n")
    text = write_leaderboard(root, B=200, plots=False).read_text()
    for name in ("route-plugin-length", "cascade-plugin-length"):  # a router and a cascade
        rows = [line for line in text.splitlines() if line.startswith(f"| {name}")]
        assert rows and "(1 of" in rows[0]  # one operating point of its threshold sweep
        assert name.replace("-", ":", 1) in (root / "replay-humaneval.md").read_text()
