r"""Math answer extraction and comparison: pure functions, no model or data access.

Extraction of a model's final answer: of the marked answers (a ``#### x`` line that holds a number, a
``\boxed{...}``, an answer-like "the answer is ..." phrase) the one written *last* wins; without any,
the last number. Comparison: numeric equivalence where both sides parse
as numbers (commas, ``$``, units, percent, simple fractions, ``\frac``/``\dfrac``, decimals), else a
normalised exact-string match (for expression answers).
"""

from __future__ import annotations

import re
from fractions import Fraction

_HASHES = re.compile(r"####\s*([^\n]*)")
_LABEL = re.compile(r"^[\W_]*(?:final\s+)?answer\s*(?:is\b|:|=)?[*:\s]*", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
_ANSWER_LIKE = re.compile(r"\d|\\[A-Za-z]|^\(?[A-E]\)?$|^[A-Za-z]\s*[=<>]")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_PHRASE = re.compile(
    r"(?:(?:final answer|the answer)\s*(?:is|=|:)|^[\W_]*answer[*\s]*:)[*:\s]*(.+?)(?:\.\s|\.?\s*$|\n)",
    re.IGNORECASE | re.MULTILINE,
)
_NUMBER = re.compile(r"(?<![\w.)])-?\d+\s*/\s*\d+(?![\d.])|(?<![\w.)])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_DECIMAL = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)$")
_SLASH = re.compile(r"^([-+]?\d+)\s*/\s*([-+]?\d+)$")
_FRAC = re.compile(r"^([-+]?)\\frac\{([-+]?\d+(?:\.\d+)?)\}\{([-+]?\d+(?:\.\d+)?)\}$")
_TEXT = re.compile(r"\\(?:text|mbox|mathrm)\{[^{}]*\}")
_TRAILING_WORDS = re.compile(r"(?<=[\d}])\s*[A-Za-z][A-Za-z .']*$")
_ASSIGN = re.compile(r"^[A-Za-z]\s*=\s*(?=\S)")


def matching_brace(text: str, open_at: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``open_at`` (nesting aware), or -1."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def boxed_answers(text: str) -> list[tuple[int, str]]:
    r"""(position, content) of every ``\boxed{...}`` (nested braces) or ``\boxed x``, in order."""
    found: list[tuple[int, str]] = []
    for m in _BOXED.finditer(text):
        start = m.end()
        if start < len(text) and text[start] == "{":
            end = matching_brace(text, start)
            if end != -1:
                found.append((m.start(), text[start + 1 : end].strip()))
        else:
            bare = re.match(r"[^\s$]+", text[start:])
            if bare:
                found.append((m.start(), bare.group(0).strip()))
    return found


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` or ``\boxed x``; None if there is none."""
    found = boxed_answers(text)
    return found[-1][1] if found else None


def last_number(text: str) -> str | None:
    nums = _NUMBER.findall(text)
    return nums[-1] if nums else None


def _marked_answers(text: str) -> list[tuple[int, str]]:
    """(position, answer) of every marked final answer in ``text``."""
    found: list[tuple[int, str]] = []
    for m in _HASHES.finditer(text):
        content = _LABEL.sub("", m.group(1).strip()).strip()
        if _DIGIT.search(content):  # "#### Final Answer:" or "#### <number>" is a heading, not an answer
            found.append((m.start(), content))
    found += [(at, boxed) for at, boxed in boxed_answers(text) if boxed]
    for m in _PHRASE.finditer(text):
        cand = m.group(1).strip().strip("*").strip()
        if cand and _ANSWER_LIKE.search(cand):  # "the answer is clear" is prose, not an answer
            found.append((m.start(), cand))
    return found


def extract_answer(text: str, *, number_fallback: bool = True) -> str | None:
    """The final answer in a model's response, as written (not yet normalised); None if none found."""
    marked = _marked_answers(text)
    if marked:
        return max(marked, key=lambda pm: pm[0])[1]
    return last_number(text) if number_fallback else None


def gsm8k_gold(answer_field: str) -> str:
    """The gold number of a GSM8K worked solution (the text after its last ``####``)."""
    parts = answer_field.rsplit("####", 1)
    if len(parts) != 2 or not parts[1].strip():
        raise ValueError(f"GSM8K answer has no '#### <number>' line: {answer_field[-80:]!r}")
    return parts[1].strip()


def _strip_wrappers(s: str) -> str:
    s = s.strip()
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\%", "").replace("%", "")
    s = re.sub(r"\\[,!;: ]", "", s).replace("{,}", ",").replace("~", "")
    s = re.sub(r"\^\s*\{?\\circ\}?", "", s)
    s = _TEXT.sub("", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = s.strip().rstrip(".").strip()
    return _ASSIGN.sub("", s).strip()


def parse_number(s: str) -> Fraction | None:
    r"""The value of a simple numeric answer, or None if ``s`` is not one.

    Accepts ``1,234``, ``$18.00``, ``50%``, ``18 dollars``, ``-3/4``, ``\frac{3}{4}``, ``\dfrac{-1}{2}``,
    ``x = 5``; rejects anything with operators, roots or symbols.
    """
    t = _strip_wrappers(s)
    t = _TRAILING_WORDS.sub("", t).strip()
    if t.startswith("(") and t.endswith(")") and "," not in t:
        t = t[1:-1].strip()
    if _THOUSANDS.match(t):
        t = t.replace(",", "")
    try:
        if _DECIMAL.match(t):
            return Fraction(t)
        m = _SLASH.match(t)
        if m:
            return Fraction(int(m.group(1)), int(m.group(2))) if int(m.group(2)) else None
        m = _FRAC.match(t)
        if m:
            num, den = Fraction(m.group(2)), Fraction(m.group(3))
            if den == 0:
                return None
            value = num / den
            return -value if m.group(1) == "-" else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


def normalize_expr(s: str) -> str:
    r"""Canonical text of an expression answer: no spaces, ``\left``/``\right``, ``$``, ``\,``,
    trailing period, ``\text{}`` wrappers; ``\dfrac``/``\tfrac`` -> ``\frac``."""
    t = s.strip().replace("$", "")
    t = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", t)
    t = re.sub(r"\\[,!;: ]", "", t)
    t = re.sub(r"\\[dt]frac", r"\\frac", t)
    t = re.sub(r"\\(?:text|mbox|mathrm)\{([^{}]*)\}", r"\1", t)
    t = re.sub(r"\s+", "", t)
    t = t.rstrip(".")
    t = re.sub(r"^\(([A-E])\)$", r"\1", t)  # multiple-choice letter: (B) == B
    return _ASSIGN.sub("", t)


def answers_match(pred: str | None, gold: str) -> bool:
    """Numeric equivalence where both sides are numbers, else normalised exact-string equality.

    A prediction that is not itself a number but contains exactly one number (``"18 eggs per day"``,
    ``"The total is 18"``) is compared by that number when the gold answer is numeric.
    """
    if pred is None:
        return False
    g = parse_number(gold)
    if g is not None:
        p = parse_number(pred)
        if p is None:
            nums = _NUMBER.findall(_strip_wrappers(pred))
            p = parse_number(nums[0]) if len(nums) == 1 else None
        if p is not None:
            return p == g
    return normalize_expr(pred) == normalize_expr(gold) != ""
