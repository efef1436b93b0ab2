"""Answer extraction on real model outputs, cross-checked against lm-evaluation-harness' own gsm8k filters.

The fixture holds answers of the embedded pair under the shipped math prompt. Two extractors read them:
ours (the last marked answer: ``####`` with a number, ``\\boxed{}``, "the answer is"; else the last number)
and lm-eval's ``flexible-extract`` (the last number in the text), with the regex taken from lm-eval's
installed gsm8k task definition, so a change there shows here. Every disagreement must be explained in
the fixture; the agreement rate is printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shepherd_bench.tasks.math_answers import answers_match, extract_answer

FIXTURE = Path(__file__).parent / "fixtures" / "math_outputs" / "gsm8k_model_outputs.jsonl"


def cases() -> list[dict[str, Any]]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def lm_eval_filters() -> dict[str, Any]:
    """lm-eval's gsm8k task filters (strict-match, flexible-extract) as lm-eval builds them."""
    import lm_eval
    import yaml
    from lm_eval.filters.extraction import RegexFilter

    spec = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
    out = {}
    for f in spec["filter_list"]:
        regex = next(s for s in f["filter"] if s["function"] == "regex")
        kw = {k: v for k, v in regex.items() if k in ("regex_pattern", "group_select")}
        out[f["name"]] = RegexFilter(**kw)
    return out


def lm_eval_normalise(s: str) -> str:
    """What lm-eval's gsm8k exact_match ignores: commas, dollar signs, a trailing full stop."""
    return s.strip().replace(",", "").replace("$", "").removesuffix(".")


def test_extraction_on_real_outputs_matches_the_reviewed_answers() -> None:
    got = [(c["query_id"], extract_answer(c["text"])) for c in cases()]
    assert got == [(c["query_id"], c["expected"]) for c in cases()]
    assert len(got) >= 100


def test_lm_eval_flexible_extract_cross_check(capsys: pytest.CaptureFixture[str]) -> None:
    flexible = lm_eval_filters()["flexible-extract"]
    cs = cases()
    theirs = [r[0] for r in flexible.apply([[c["text"]] for c in cs], [None] * len(cs))]
    agree, unexplained = 0, []
    for c, t in zip(cs, theirs, strict=True):
        assert t == c["lm_eval_flexible"], f"{c['query_id']}: lm-eval now extracts {t!r}"
        ours = extract_answer(c["text"])
        if ours is not None and answers_match(ours, lm_eval_normalise(t)):
            agree += 1
            assert "why" not in c, f"{c['query_id']}: explained as a disagreement but the two agree"
        elif not c.get("why"):
            unexplained.append((c["query_id"], ours, t))
    assert not unexplained, f"unexplained disagreements with lm-eval flexible-extract: {unexplained}"
    rate = agree / len(cs)
    with capsys.disabled():
        print(f"\nlm-eval flexible-extract agreement on {len(cs)} real outputs: {agree}/{len(cs)} = {rate:.1%}")
    assert rate >= 0.9


def test_lm_eval_filters_agree_on_every_gsm8k_worked_solution(data_dir: Path) -> None:
    """On the 1,319 reference solutions (each ends '#### <number>') both lm-eval filters and ours agree."""
    from shepherd_bench.tasks import get_task

    docs = get_task("gsm8k").load(data_dir).docs
    texts = [str(d.record["solution"]) for d in docs]
    filters = lm_eval_filters()
    for name in ("strict-match", "flexible-extract"):
        theirs = [r[0] for r in filters[name].apply([[t] for t in texts], [None] * len(texts))]
        bad = [d.id for d, t, s in zip(docs, theirs, texts, strict=True)
               if not answers_match(str(extract_answer(s)), lm_eval_normalise(t))]
        assert not bad, f"{name}: {len(bad)} solutions disagree, e.g. {bad[:5]}"
