"""Parent-side checks: lift literal asserts out of the test code and judge them in the parent.

``assert f(x) == [1, 2]`` becomes ``__sb_case__(0, f(x))`` in the code the child runs; the expected value
``[1, 2]`` stays in the parent. The child sends back the serialised return value (exact builtin types only)
and the parent compares. Code in the child can then neither override ``__eq__`` nor forge the verdict of
these asserts without knowing the expected values, which it never sees.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

CASE_FN = "__sb_case__"


@dataclass(frozen=True)
class Expectation:
    kind: str  # eq | truthy | falsy | is | close
    value: Any = None
    tol: float = 0.0
    strict: bool = True  # close: `<` rather than `<=`
    source: str = ""

    def holds(self, got: Any) -> bool:
        if isinstance(got, Opaque):
            return False
        try:
            if self.kind == "eq":
                return bool(got == self.value)
            if self.kind == "truthy":
                return bool(got)
            if self.kind == "falsy":
                return not got
            if self.kind == "is":
                return got is self.value
            if self.kind == "close":
                if type(got) not in (int, float, bool):
                    return False
                diff = abs(got - self.value)
                return bool(diff < self.tol) if self.strict else bool(diff <= self.tol)
        except (TypeError, ValueError, OverflowError, RecursionError):
            return False
        return False


class Opaque:
    """A value the child could not express with builtin types: it equals nothing."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"


# ----------------------------------------------------------------------------- rewriting

def _literal(node: ast.expr) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _number(node: ast.expr) -> float | None:
    ok, value = _literal(node)
    return value if ok and type(value) in (int, float) else None


def _close_case(test: ast.Compare) -> tuple[ast.expr, Expectation] | None:
    """``abs(L - c) < tol`` or ``abs(c - L) <= tol`` with literal numbers c and tol."""
    left = test.left
    if not (isinstance(left, ast.Call) and isinstance(left.func, ast.Name) and left.func.id == "abs"
            and len(left.args) == 1 and not left.keywords and isinstance(left.args[0], ast.BinOp)
            and isinstance(left.args[0].op, ast.Sub) and isinstance(test.ops[0], (ast.Lt, ast.LtE))):
        return None
    tol = _number(test.comparators[0])
    if tol is None:
        return None
    a, b = left.args[0].left, left.args[0].right
    for expr, const in ((a, b), (b, a)):
        c = _number(const)
        if c is not None and _number(expr) is None:
            return expr, Expectation("close", c, float(tol), isinstance(test.ops[0], ast.Lt))
    return None


def _case_of(test: ast.expr) -> tuple[ast.expr, Expectation] | None:
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        op, rhs = test.ops[0], test.comparators[0]
        if isinstance(op, ast.Eq):
            for expr, const in ((test.left, rhs), (rhs, test.left)):
                ok, value = _literal(const)
                if ok and not _literal(expr)[0]:
                    return expr, Expectation("eq", value)
            return None
        if isinstance(op, ast.Is) and isinstance(rhs, ast.Constant) and rhs.value in (True, False, None):
            return test.left, Expectation("is", rhs.value)
        return _close_case(test)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return None if _literal(test.operand)[0] else (test.operand, Expectation("falsy"))
    if isinstance(test, (ast.Call, ast.Name, ast.Attribute, ast.Subscript)):
        return test, Expectation("truthy")
    return None


class _Lifter(ast.NodeTransformer):
    """Replaces liftable asserts that run unconditionally in their body (module or function level)."""

    def __init__(self) -> None:
        self.expectations: list[Expectation] = []
        self.called: set[str] = set()  # functions whose results the lifted asserts check

    def _body(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                stmt.body = self._body(stmt.body)
            elif isinstance(stmt, ast.Assert):
                case = _case_of(stmt.test)
                if case is not None:
                    expr, exp = case
                    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
                        self.called.add(expr.func.id)
                    index = len(self.expectations)
                    self.expectations.append(Expectation(exp.kind, exp.value, exp.tol, exp.strict,
                                                          ast.unparse(stmt.test)[:200]))
                    call = ast.Call(ast.Name(CASE_FN, ast.Load()), [ast.Constant(index), expr], [])
                    stmt = ast.copy_location(ast.Expr(call), stmt)
            out.append(stmt)
        return out

    def lift(self, tree: ast.Module) -> ast.Module:
        tree.body = self._body(tree.body)
        return ast.fix_missing_locations(tree)


@dataclass
class Lifted:
    tests: str  # the test code the child runs
    expectations: list[Expectation]  # kept in the parent
    called: list[str]  # names the lifted asserts call: functions under test


def lift_asserts(tests: str) -> Lifted:
    try:
        tree = ast.parse(tests)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return Lifted(tests, [], [])
    lifter = _Lifter()
    tree = lifter.lift(tree)
    if not lifter.expectations:
        return Lifted(tests, [], [])
    return Lifted(ast.unparse(tree), lifter.expectations, sorted(lifter.called))


# ----------------------------------------------------------------------------- decoding

_CONTAINERS: dict[str, Any] = {"tuple": tuple, "set": set, "frozenset": frozenset}


def decode(value: Any) -> Any:
    """Inverse of the child's ``encode``; anything malformed decodes to an ``Opaque``."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is list:
        return [decode(v) for v in value]
    if type(value) is not dict:
        return Opaque("malformed")
    tag, inner = value.get("$"), value.get("v")
    try:
        if tag in _CONTAINERS and type(inner) is list:
            return _CONTAINERS[tag](decode(v) for v in inner)
        if tag == "dict" and type(inner) is list:
            return {decode(k): decode(v) for k, v in inner}
        if tag == "bytes" and type(inner) is str:
            return bytes.fromhex(inner)
        if tag == "complex" and type(inner) is list:
            return complex(float(inner[0]), float(inner[1]))
    except (TypeError, ValueError, IndexError):
        return Opaque("malformed")
    return Opaque(str(value.get("type", "opaque"))[:80])


@dataclass
class ChannelResult:
    ended: bool = False
    ok: bool = False
    error: str = ""
    forged: bool = False
    cases: dict[int, list[Any]] | None = None


def parse_channel(data: bytes, nonce: str) -> ChannelResult:
    """Parse the child's verdict channel: case lines, then one end line, all carrying the job's nonce."""
    res = ChannelResult(cases={})
    assert res.cases is not None
    for raw in data.split(b"\n"):
        if not raw:
            continue
        try:
            msg = json.loads(raw)
        except (ValueError, RecursionError):
            res.forged = True
            continue
        if type(msg) is not dict or msg.get("n") != nonce or res.ended:
            res.forged = True
            continue
        if msg.get("k") == "case" and type(msg.get("i")) is int:
            try:
                res.cases.setdefault(msg["i"], []).append(decode(msg.get("v")))
            except RecursionError:
                res.forged = True
        elif msg.get("k") == "end":
            res.ended = True
            res.ok = msg.get("ok") is True
            res.error = str(msg.get("err", ""))[:500]
    return res


def judge_cases(expectations: list[Expectation], cases: dict[int, list[Any]]) -> str | None:
    """None when every lifted assert held each time it ran; else a short reason."""
    for index, exp in enumerate(expectations):
        seen = cases.get(index)
        if not seen:
            return f"assert never reached: {exp.source}"
        for got in seen:
            if not exp.holds(got):
                shown = repr(got)
                return f"AssertionError: {exp.source} (got {shown[:120]})"
    extra = set(cases) - set(range(len(expectations)))
    return f"unexpected case index {min(extra)}" if extra else None

