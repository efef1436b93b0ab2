"""Math answer extraction and equivalence (pure functions)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from shepherd_bench.tasks.math_answers import (
    answers_match,
    extract_answer,
    gsm8k_gold,
    last_boxed,
    normalize_expr,
    parse_number,
)
from shepherd_bench.tasks.math_task import score_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She makes 9 * 2 = $18 every day.\n#### 18", "18"),
        ("work...\n#### 1,000\n", "1,000"),
        ("#### 5\nthen more text\n#### 7", "7"),
        ("So the result is \\boxed{42}.", "42"),
        ("\\boxed{1} first, then \\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),
        ("nested \\boxed{\\frac{\\sqrt{3}}{2}} done", "\\frac{\\sqrt{3}}{2}"),
        ("bare \\boxed 7 here", "7"),
        ("$\\boxed{x \\geq 1}$", "x \\geq 1"),
        ("The answer is 18.", "18"),
        ("Therefore, the final answer is: $18.00.", "$18.00"),
        ("So the answer is -3/4\n", "-3/4"),
        ("Work.\n**Answer:** 12 cups", "12 cups"),
        ("Answer: B", "B"),
        ("Let's answer: first 3 + 4 = 7", "7"),
        ("We get 3 apples, then 4 more, total 7 apples", "7"),
        ("The change is -5 degrees", "-5"),
        ("It costs 1,234.5 in total", "1,234.5"),
    ],
)
def test_extract_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "I cannot solve this.", "#### \n", "\\boxed{unclosed", "no digits at all here"],
)
def test_extract_answer_failures(text: str) -> None:
    assert extract_answer(text) is None


def test_extract_without_number_fallback() -> None:
    assert extract_answer("there were 3 cats", number_fallback=False) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("18", Fraction(18)),
        ("18.00", Fraction(18)),
        ("$18", Fraction(18)),
        ("\\$18.50", Fraction(37, 2)),
        ("1,000", Fraction(1000)),
        ("1,234,567.25", Fraction(123456725, 100)),
        ("-7", Fraction(-7)),
        ("+3", Fraction(3)),
        (".5", Fraction(1, 2)),
        ("50%", Fraction(50)),
        ("50\\%", Fraction(50)),
        ("18 dollars", Fraction(18)),
        ("5 cm.", Fraction(5)),
        ("30^\\circ", Fraction(30)),
        ("12 \\text{ apples}", Fraction(12)),
        ("3/4", Fraction(3, 4)),
        ("-3 / 4", Fraction(-3, 4)),
        ("\\frac{3}{4}", Fraction(3, 4)),
        ("\\dfrac{6}{8}", Fraction(3, 4)),
        ("\\tfrac{1}{2}", Fraction(1, 2)),
        ("-\\frac{4}{5}", Fraction(-4, 5)),
        ("\\frac{-4}{5}", Fraction(-4, 5)),
        ("x = 5", Fraction(5)),
        ("(7)", Fraction(7)),
        ("1{,}000", Fraction(1000)),
    ],
)
def test_parse_number(text: str, value: Fraction) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "abc", "\\sqrt{3}", "2\\pi", "(1,2)", "x+1", "3/0", "\\frac{1}{0}", "1,2", "1e5x", "A"],
)
def test_parse_number_rejects(text: str) -> None:
    assert parse_number(text) is None


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("18", "18"),
        ("18.00", "18"),
        ("$1,000", "1000"),
        ("0.5", "\\frac{1}{2}"),
        ("\\dfrac{1}{2}", "1/2"),
        ("-0.75", "-\\frac{3}{4}"),
        ("18 eggs per day", "18"),
        ("The total is 18", "18"),
        ("x=2", "2"),
        ("\\left(1, 2\\right)", "(1,2)"),
        ("$\\dfrac{\\sqrt{3}}{2}$", "\\frac{\\sqrt{3}}{2}"),
        ("x\\geq 1.", "x \\geq 1"),
        ("\\text{A}", "A"),
        ("B", "B"),
        ("(B)", "B"),
    ],
)
def test_answers_match(pred: str, gold: str) -> None:
    assert answers_match(pred, gold)


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        (None, "18"),
        ("17", "18"),
        ("18.01", "18"),
        ("-18", "18"),
        ("3 or 18", "18"),
        ("(1,3)", "(1,2)"),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{\\sqrt{3}}{2}"),
        ("A", "B"),
        ("", ""),
    ],
)
def test_answers_differ(pred: str | None, gold: str) -> None:
    assert not answers_match(pred, gold)


def test_last_boxed_nested_and_missing() -> None:
    assert last_boxed("\\boxed{\\{1,2\\}}") == "\\{1,2\\}"
    assert last_boxed("no box") is None


def test_normalize_expr() -> None:
    assert normalize_expr(" $\\left[ 1 ,\\, 2 \\right)$. ") == "[1,2)"
    assert normalize_expr("\\dfrac{a}{b}") == normalize_expr("\\frac{a}{b}")


def test_gsm8k_gold() -> None:
    assert gsm8k_gold("3 + 4 = <<3+4=7>>7\n#### 7") == "7"
    with pytest.raises(ValueError, match="####"):
        gsm8k_gold("no marker")


def test_score_answer_statuses() -> None:
    ok = score_answer("... #### 18", "18")
    assert (ok.correct, ok.status, ok.extracted) == (True, "pass", "18")
    bad = score_answer("... #### 17", "18")
    assert (bad.correct, bad.status, bad.extracted) == (False, "fail", "17")
    none = score_answer("I do not know.", "18")
    assert (none.correct, none.status, none.extracted) == (False, "no_answer", None)


def test_a_copied_format_placeholder_is_not_an_answer() -> None:
    from shepherd_bench.tasks.math_answers import extract_answer

    text = "so the revenue is \\(11 \\times 2 = 22\\).\n\n#### <number>"
    assert extract_answer(text) == "22"
    assert extract_answer("#### <number>", number_fallback=False) is None
    assert extract_answer("#### 5\n#### <number>") == "5"


# Held-out cases from real outputs of the embedded pair (issue: a numberless "####" heading blocked the
# boxed answer; an early "####" beat a later boxed one).
def test_a_numberless_hash_heading_does_not_block_the_boxed_answer() -> None:
    from shepherd_bench.tasks.math_answers import extract_answer

    text = "... = 540 meters\n\n#### Final Answer:\n\\[\n\\boxed{540}\n\\]"
    assert extract_answer(text) == "540"
    assert score_answer(text, "540").correct


def test_the_marked_answer_written_last_wins() -> None:
    from shepherd_bench.tasks.math_answers import extract_answer

    assert extract_answer("#### 16\nWait, I forgot the second day.\n16 * 3 = 48\n\\boxed{48}") == "48"
    assert extract_answer("\\boxed{16}\nOn reflection 16 * 3 = 48.\n#### 48") == "48"
    assert extract_answer("So \\boxed{7}. Checking: the answer is 9.") == "9"
    assert extract_answer("The answer is 9. Writing it boxed: \\(\\boxed{9}\\) dollars") == "9"
    assert extract_answer("#### Final Answer: 540") == "540"  # a label on the hash line is not the answer


def test_prose_after_the_answer_is_not_an_answer() -> None:
    from shepherd_bench.tasks.math_answers import extract_answer

    assert extract_answer("Total: \\boxed{18}\n\nI hope the answer is clear.") == "18"
    assert extract_answer("\\boxed{18}. The final answer: see above.") == "18"
    assert extract_answer("So the answer is B.") == "B"  # a multiple-choice option letter is answer-like
