"""Command line: parse -> config object -> call the library. Heavy imports happen inside commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .cli_args import add_data_args, add_model_args, model_config
from .config import ConfigError, RunConfig, parse_kv
from .errors import UserError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="shepherd-bench", description=(
        "How cheaply can a small model, helped by a large one, reach the large model's accuracy?"))
    ap.add_argument("--version", action="version", version=f"shepherd-bench {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a strategy on a task (resumable; cached)")
    r.add_argument("--task", required=True, help="task name (shepherd-bench list tasks)")
    r.add_argument("--strategy", required=True, help="strategy name (shepherd-bench list strategies)")
    r.add_argument("-S", dest="params", action="append", metavar="KEY=VALUE", help="strategy parameter (repeatable)")
    r.add_argument("--limit", type=int, help="first N queries of the task")
    r.add_argument("--seed", type=int, default=0,
                   help="run seed: every random choice of a strategy (sampling, random routing) derives from it")
    r.add_argument("--out", type=Path, help="run folder (default runs/<task>-<strategy>-...; rerun to resume)")
    r.add_argument("--batch-size", type=int, default=16, help="queries per strategy call (and per checkpoint)")
    r.add_argument("--workers", type=int, help="sandbox workers (default: cores)")
    r.add_argument("--errors", choices=["wrong", "exclude"], default="wrong",
                   help="failed calls count as wrong answers (default) or are excluded from accuracy")
    r.add_argument("--no-cache", action="store_true", help="do not read or write the generation cache")
    r.add_argument("--cache", type=Path, help="generation cache file (default: user cache dir)")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_model_args(r)
    add_data_args(r)

    ls = sub.add_parser("list", help="list tasks, strategies or backends")
    ls.add_argument("what", choices=["tasks", "strategies", "backends"])

    ex = sub.add_parser("exec", help="grade samples produced anywhere (human-eval / evalplus style)")
    ex.add_argument("--task", required=True, help="task whose tests grade the samples (humaneval, mbpp, ...)")
    ex.add_argument("--samples", type=Path, required=True, help='JSONL of {"task_id", "completion"|"solution"}')
    ex.add_argument("--out", type=Path, help="results JSONL (default: <samples>_results.jsonl)")
    ex.add_argument("--workers", type=int)
    add_data_args(ex)

    rp = sub.add_parser("report", help="accuracy and cost with paired-bootstrap CIs over run folders")
    rp.add_argument("runs", nargs="+", type=Path)
    rp.add_argument("--target", default="0.95",
                    help="accuracy to match: a fraction of LLM-only (0.95), 'llm', or 'gap:0.8' (SLM + 0.8 x gap)")
    rp.add_argument("--format", choices=["md", "csv", "json"], default="md", help="output format (default md)")
    rp.add_argument("--plot", type=Path, help="write an accuracy-cost PNG here")
    rp.add_argument("--resamples", type=int, default=2000, help="paired-bootstrap resamples (default 2000)")
    rp.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")

    lb = sub.add_parser("leaderboard", help="regenerate leaderboard/LEADERBOARD.md, the replay reports and the plots by replaying the published grids")
    lb.add_argument("--root", type=Path, default=Path("leaderboard"),
                    help="leaderboard folder with leaderboard.yaml, grids/, prices.json and notes.md (default leaderboard)")
    lb.add_argument("--check", action="store_true", help="regenerate in a scratch copy and fail if any generated file (markdown, replay reports, "
                    "plots, the generated blocks of notes.md and README.md) differs")

    from .research.grid import add_grid_parser, add_publish_parser
    from .research.replay import add_replay_parser

    add_grid_parser(sub)
    add_publish_parser(sub)
    add_replay_parser(sub)

    le = sub.add_parser("lm-eval", help="lm_eval's CLI with shepherd-bench models and tasks registered",
                        add_help=False)
    le.add_argument("rest", nargs=argparse.REMAINDER)
    return ap


LM_EVAL_USAGE = ("shepherd-bench lm-eval hands its arguments to lm_eval's own CLI, e.g. "
                 "`shepherd-bench lm-eval run --model shepherd-bench --model_args strategy=slm --tasks "
                 "gsm8k --limit 5`; `shepherd-bench lm-eval --help` lists lm_eval's options")


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else list(argv)
    if raw and raw[0] == "lm-eval":
        # argparse's REMAINDER cannot take a leading option (lm-eval --help): hand the rest over as is
        if len(raw) == 1:
            print(f"error: {LM_EVAL_USAGE}", file=sys.stderr)
            return 2
        args = argparse.Namespace(command="lm-eval", rest=raw[1:])
    else:
        args = build_parser().parse_args(raw)
    try:
        return int(COMMANDS[args.command](args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished samples are saved; rerun the same command to resume", file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    from .prices import load_prices
    from .runner import execute

    if args.limit is not None and args.limit <= 0:
        raise ConfigError("--limit must be a positive number of queries")
    cfg = RunConfig(
        task=args.task,
        strategy=args.strategy,
        strategy_params=parse_kv(args.params),
        slm=model_config(args.slm, args.slm_price, args.slm_opt, "small"),
        llm=model_config(args.llm, args.llm_price, args.llm_opt, "large"),
        limit=args.limit,
        seed=args.seed,
        data_dir=str(args.data_dir) if args.data_dir else None,
        batch_size=args.batch_size,
        workers=args.workers,
        error_policy=args.errors,
    )
    prices = load_prices(args.prices)
    res = execute(cfg, prices=prices, out=args.out, cache_path=args.cache, use_cache=not args.no_cache)
    s = res.summary
    if args.json:
        print(json.dumps(s, indent=2, sort_keys=True))
        return 0
    print(f"run folder   {res.run_dir}")
    print(f"task         {s['task']} (n={s['n']})   strategy {s['strategy']} {s['strategy_params'] or ''}")
    print(f"accuracy     {s['accuracy']:.4f}  ({s['correct']}/{s['n']}; errors {s['errors']} "
          f"counted as {'wrong' if s['error_policy'] == 'wrong' else 'excluded'}; no answer {s['no_answer']})")
    print(f"cost         ${s['cost_usd']:.6f}  (${1000 * s['cost_usd_per_query']:.4f} per 1k queries; "
          f"LLM priced as {s['llm_price']}, SLM as {s['slm_price']}, prices of {s['prices_date']})")
    print(f"LLM tokens   {s['llm_input_tokens']} in ({s['llm_cached_input_tokens']} cached) / "
          f"{s['llm_output_tokens']} out over {s['llm_calls']} calls;  SLM {s['slm_input_tokens']} in / "
          f"{s['slm_output_tokens']} out over {s['slm_calls']} calls")
    print(f"model calls  {s['model_calls']} (+{s['cached_calls']} from cache)   wall {s['wall_s']:.1f}s")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "tasks":
        from .tasks import get_task, task_names

        for n in task_names():
            t = get_task(n)
            print(f"{n:16s} {t.kind:5s} {getattr(t, 'description', '')}")
    elif args.what == "strategies":
        from .strategies import describe_all

        for d in describe_all():
            params = ", ".join(f"{p['name']}:{p['type']}={p['default']}" for p in d["params"])
            print(f"{d['name']:20s} {d['kind']:9s} {params}")
    else:
        from .backends import describe_backends

        for name, desc in describe_backends():
            print(f"{name:13s} {desc}")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from .sandbox.exec_cli import exec_samples

    res = exec_samples(args.task, args.samples, args.out, args.workers, args.data_dir)
    print(json.dumps(res, indent=2, sort_keys=True))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .analysis.matched import Target
    from .analysis.report import build_report

    try:
        Target.parse(args.target)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for path in args.runs:
        if not (Path(path) / "manifest.json").is_file():
            raise ConfigError(f"{path} is not a run folder (no manifest.json); pass folders written by "
                              f"`shepherd-bench run` or `replay --export-runs`")
    target: float | str = float(args.target) if args.target.replace(".", "", 1).isdigit() else args.target
    print(build_report(args.runs, target=target, fmt=args.format, plot=args.plot,
                       B=args.resamples, seed=args.seed))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from .analysis.leaderboard import write_leaderboard

    if not args.check:
        print(write_leaderboard(args.root))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp) / "leaderboard"
        shutil.copytree(args.root, fresh_root)
        readme = args.root.parent / "README.md"  # its generated blocks (``fill_generated``)
        if readme.exists():
            shutil.copyfile(readme, fresh_root.parent / "README.md")
        write_leaderboard(fresh_root)
        stale = [str(args.root / p.relative_to(fresh_root)) for p in sorted(fresh_root.rglob("*"))
                 if p.is_file() and _differs(p, args.root / p.relative_to(fresh_root))]
        if readme.exists() and _differs(fresh_root.parent / "README.md", readme):
            stale.append(str(readme))
    if stale:
        print("out of date: " + ", ".join(stale) + "; run `shepherd-bench leaderboard` and commit the result",
              file=sys.stderr)
        return 1
    print(f"{args.root / 'LEADERBOARD.md'} is what the published grids and committed runs say")
    return 0


def _differs(a: Path, b: Path) -> bool:
    return not b.exists() or a.read_bytes() != b.read_bytes()


def cmd_lm_eval(args: argparse.Namespace) -> int:
    from .integrations.lm_eval import run_lm_eval_cli

    return run_lm_eval_cli(args.rest)


def cmd_grid(args: argparse.Namespace) -> int:
    from .research.grid import cmd_grid as grid

    return int(grid(args) or 0)


def cmd_publish_grid(args: argparse.Namespace) -> int:
    from .research.grid import cmd_publish_grid as publish

    return int(publish(args) or 0)


def cmd_replay(args: argparse.Namespace) -> int:
    from .research.replay import cmd_replay as replay

    return int(replay(args) or 0)


COMMANDS = {
    "run": cmd_run,
    "grid": cmd_grid,
    "publish-grid": cmd_publish_grid,
    "replay": cmd_replay,
    "list": cmd_list,
    "exec": cmd_exec,
    "report": cmd_report,
    "leaderboard": cmd_leaderboard,
    "lm-eval": cmd_lm_eval,
}

if __name__ == "__main__":
    sys.exit(main())
