"""A regular-expression filter whose running time is bounded, for re_filter.

Python's ``re`` backtracks, so a pattern such as ``(a+)+$`` takes time
exponential in the length of the text it fails on: a visitor could tie up a
worker with one request.  :class:`SafeFilter` parses the pattern with
Python's own parser (same syntax, same error messages) and runs it as a
Thompson automaton whose subsets are built lazily and cached (a lazy DFA), so
each character of a name costs a bounded amount of work whatever the pattern.
Every call also runs under a work budget and a time budget; past either,
:class:`FilterTooCostly` is raised.

Constructs that need backtracking (backreferences, lookaround, atomic groups,
possessive quantifiers, conditionals) are refused with :class:`FilterError`.
"""

from __future__ import annotations

import re
import time
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple

from ox_profile import _validate

try:  # CPython 3.11+
    from re import _constants as _C  # type: ignore[attr-defined]
    from re import _parser as _P  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older layout
    import sre_constants as _C  # type: ignore[no-redef]
    import sre_parse as _P  # type: ignore[no-redef]

__all__ = ["SafeFilter", "FilterError", "FilterTooCostly", "MAX_PATTERN_LENGTH"]

#: Longest pattern accepted (the API's limit too).
MAX_PATTERN_LENGTH = _validate.MAX_FILTER_LENGTH
#: Most automaton states a pattern may expand to (counted repeats expand).
MAX_STATES = 4000
#: Most cached subset states before the cache is dropped.
MAX_DFA_STATES = 10000
#: Work units (automaton states visited) one :meth:`SafeFilter.select` may use.
DEFAULT_WORK_BUDGET = 3_000_000
#: Seconds one :meth:`SafeFilter.select` may use.
DEFAULT_TIME_BUDGET = 0.5


class FilterError(ValueError):
    """The pattern is invalid, too long or uses an unsupported construct."""


class FilterTooCostly(FilterError):
    """Evaluating the pattern went past its work or time budget."""


# Node kinds of the automaton.
_CHAR, _SPLIT, _ASSERT, _MATCH = range(4)

_UNSUPPORTED = {
    "GROUPREF": "backreferences",
    "GROUPREF_EXISTS": "conditional groups",
    "ASSERT": "lookahead/lookbehind",
    "ASSERT_NOT": "negative lookahead/lookbehind",
    "ATOMIC_GROUP": "atomic groups",
    "POSSESSIVE_REPEAT": "possessive quantifiers",
}

_SIMPLE_OPS = {"LITERAL", "NOT_LITERAL", "ANY", "IN", "AT"}


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _category(name: str, ascii_only: bool) -> Callable[[str], bool]:
    if ascii_only:
        digit = lambda c: "0" <= c <= "9"  # noqa: E731
        space = lambda c: c in " \t\n\r\f\v"  # noqa: E731
        word = lambda c: c.isascii() and _is_word(c)  # noqa: E731
    else:
        digit = str.isdecimal
        space = str.isspace
        word = _is_word
    table = {
        "CATEGORY_DIGIT": digit,
        "CATEGORY_NOT_DIGIT": lambda c: not digit(c),
        "CATEGORY_SPACE": space,
        "CATEGORY_NOT_SPACE": lambda c: not space(c),
        "CATEGORY_WORD": word,
        "CATEGORY_NOT_WORD": lambda c: not word(c),
        "CATEGORY_LINEBREAK": lambda c: c == "\n",
        "CATEGORY_NOT_LINEBREAK": lambda c: c != "\n",
    }
    try:
        return table[name]
    except KeyError:
        raise FilterError("unsupported character category in re_filter: %s" % name) from None


class _Compiler:
    """Builds the automaton from Python's parse tree."""

    def __init__(self) -> None:
        self.kind: List[int] = []
        self.arg: List[object] = []
        self.out: List[List[int]] = []
        self.has_asserts = False

    def node(self, kind: int, arg: object, out: List[int]) -> int:
        if len(self.kind) >= MAX_STATES:
            raise FilterError("re_filter is too complex (counted repeats expand to more than "
                              "%d states)" % MAX_STATES)
        self.kind.append(kind)
        self.arg.append(arg)
        self.out.append(out)
        return len(self.kind) - 1

    def seq(self, items: Iterable[Tuple[object, object]], nxt: int, flags: int) -> int:
        for op, av in reversed(list(items)):
            nxt = self.item(op, av, nxt, flags)
        return nxt

    def char(self, test: Callable[[str], bool], nxt: int) -> int:
        return self.node(_CHAR, test, [nxt])

    def item(self, op: object, av: object, nxt: int, flags: int) -> int:
        name = str(op)
        icase = bool(flags & _C.SRE_FLAG_IGNORECASE)
        if name in _UNSUPPORTED:
            raise FilterError("re_filter does not support %s" % _UNSUPPORTED[name])
        if name == "LITERAL":
            lit = chr(av)  # type: ignore[arg-type]
            if icase:
                low = lit.lower()
                return self.char(lambda c: c.lower() == low, nxt)
            return self.char(lambda c: c == lit, nxt)
        if name == "NOT_LITERAL":
            lit = chr(av)  # type: ignore[arg-type]
            if icase:
                low = lit.lower()
                return self.char(lambda c: c.lower() != low, nxt)
            return self.char(lambda c: c != lit, nxt)
        if name == "ANY":
            if flags & _C.SRE_FLAG_DOTALL:
                return self.char(lambda c: True, nxt)
            return self.char(lambda c: c != "\n", nxt)
        if name == "IN":
            return self.char(self.charset(av, flags), nxt)  # type: ignore[arg-type]
        if name == "AT":
            self.has_asserts = True
            return self.node(_ASSERT, (str(av), bool(flags & _C.SRE_FLAG_MULTILINE),
                                       bool(flags & _C.SRE_FLAG_ASCII)), [nxt])
        if name == "SUBPATTERN":
            _group, add, delete, sub = av  # type: ignore[misc]
            return self.seq(sub, nxt, (flags | add) & ~delete)
        if name == "BRANCH":
            _none, alternatives = av  # type: ignore[misc]
            starts = [self.seq(alt, nxt, flags) for alt in alternatives]
            return self.node(_SPLIT, None, starts)
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, sub = av  # type: ignore[misc]
            if high == _C.MAXREPEAT:
                loop = self.node(_SPLIT, None, [])
                body = self.seq(sub, loop, flags)
                self.out[loop] = [body, nxt]
                cur = loop
            else:
                cur = nxt
                for _ in range(high - low):
                    body = self.seq(sub, cur, flags)
                    cur = self.node(_SPLIT, None, [body, nxt])
            for _ in range(low):
                cur = self.seq(sub, cur, flags)
            return cur
        raise FilterError("re_filter does not support %s" % name.lower())

    def charset(self, items: List[Tuple[object, object]], flags: int) -> Callable[[str], bool]:
        negate = False
        chars = set()
        ranges: List[Tuple[int, int]] = []
        cats: List[Callable[[str], bool]] = []
        ascii_only = bool(flags & _C.SRE_FLAG_ASCII)
        for op, av in items:
            name = str(op)
            if name == "NEGATE":
                negate = True
            elif name == "LITERAL":
                chars.add(chr(av))  # type: ignore[arg-type]
            elif name == "RANGE":
                ranges.append(av)  # type: ignore[arg-type]
            elif name == "CATEGORY":
                cats.append(_category(str(av), ascii_only))
            else:
                raise FilterError("re_filter does not support %s in a character set" % name.lower())

        def positive(c: str) -> bool:
            if c in chars:
                return True
            code = ord(c)
            for lo, hi in ranges:
                if lo <= code <= hi:
                    return True
            for test in cats:
                if test(c):
                    return True
            return False

        if flags & _C.SRE_FLAG_IGNORECASE:
            def member(c: str) -> bool:
                return positive(c) or positive(c.lower()) or positive(c.upper())
        else:
            member = positive
        if negate:
            return lambda c: not member(c)
        return member


def _assert_ok(spec: Tuple[str, bool, bool], text: str, i: int) -> bool:
    code, multiline, ascii_only = spec
    n = len(text)
    if code == "AT_BEGINNING":
        return i == 0 or (multiline and text[i - 1] == "\n")
    if code == "AT_BEGINNING_STRING":
        return i == 0
    if code == "AT_END":
        return i == n or (i == n - 1 and text[i] == "\n") or (multiline and text[i] == "\n")
    if code == "AT_END_STRING":
        return i == n
    if code in ("AT_BOUNDARY", "AT_NON_BOUNDARY"):
        word = (lambda c: c.isascii() and _is_word(c)) if ascii_only else _is_word
        before = i > 0 and word(text[i - 1])
        after = i < n and word(text[i])
        if code == "AT_BOUNDARY":
            return before != after
        return n > 0 and before == after  # like re: \B never matches ''
    raise FilterError("re_filter does not support %s" % code.lower())


class SafeFilter:
    """A compiled re_filter: ``search(text)`` answers like
    ``re.search(pattern, text) is not None`` in time linear in ``len(text)``.
    """

    def __init__(self, pattern: str, *, work_budget: int = DEFAULT_WORK_BUDGET,
                 time_budget: float = DEFAULT_TIME_BUDGET) -> None:
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise FilterError("re_filter is longer than %d characters" % MAX_PATTERN_LENGTH)
        try:
            compiled = re.compile(pattern)
            parsed = _P.parse(pattern, 0)
        except (re.error, RecursionError, OverflowError) as exc:
            raise FilterError("invalid re_filter: %s" % exc) from None
        self.pattern = pattern
        self.work_budget = work_budget
        self.time_budget = time_budget
        flags = parsed.state.flags
        items = list(parsed)
        # A flat sequence of single-character tests and anchors cannot
        # backtrack more than len(pattern) per position: Python's re is safe.
        self._fast: Optional["re.Pattern[str]"] = (
            compiled if all(str(op) in _SIMPLE_OPS for op, _ in items) else None)
        comp = _Compiler()
        match = comp.node(_MATCH, None, [])
        try:
            self._start = comp.seq(items, match, flags)
        except RecursionError:
            raise FilterError("re_filter is nested too deeply") from None
        self._kind = comp.kind
        self._arg = comp.arg
        self._out = comp.out
        self._has_asserts = comp.has_asserts
        self._reset_cache()
        self._work = 0
        self._deadline = 0.0

    # -- lazy subset construction ---------------------------------------------

    def _reset_cache(self) -> None:
        self._sets: List[FrozenSet[int]] = []
        self._ids: Dict[FrozenSet[int], int] = {}
        self._matched: List[bool] = []
        self._closure_cache: Dict[Tuple[int, object], int] = {}
        self._step_cache: Dict[Tuple[int, str], int] = {}
        self._start_id = self._intern(frozenset([self._start]))

    def _intern(self, states: FrozenSet[int]) -> int:
        sid = self._ids.get(states)
        if sid is None:
            sid = len(self._sets)
            self._ids[states] = sid
            self._sets.append(states)
            self._matched.append(any(self._kind[s] == _MATCH for s in states))
        return sid

    def _charge(self, units: int) -> None:
        self._work += units
        if self._work > self.work_budget:
            raise FilterTooCostly("re_filter is too costly to evaluate (work budget exceeded)")

    def _closure(self, pending: int, text: str, i: int) -> int:
        """The states reachable from ``pending`` by empty moves at position i,
        kept as character tests and the match state."""
        kind, out, arg = self._kind, self._out, self._arg
        seen = set()
        keep = []
        stack = list(self._sets[pending])
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            k = kind[s]
            if k == _SPLIT:
                stack.extend(out[s])
            elif k == _ASSERT:
                if _assert_ok(arg[s], text, i):  # type: ignore[arg-type]
                    stack.extend(out[s])
            else:
                keep.append(s)
        self._charge(len(seen) + 1)
        return self._intern(frozenset(keep))

    def _step(self, closed: int, ch: str) -> int:
        kind, out, arg = self._kind, self._out, self._arg
        nxt = {self._start}
        states = self._sets[closed]
        for s in states:
            if kind[s] == _CHAR and arg[s](ch):  # type: ignore[operator]
                nxt.update(out[s])
        self._charge(len(states) + 1)
        return self._intern(frozenset(nxt))

    def _context(self, text: str, i: int) -> object:
        """What the anchors can see at position i (the closure cache key)."""
        n = len(text)
        prev = text[i - 1] if i > 0 else ""
        cur = text[i] if i < n else ""
        return (i == 0, i == n, i == n - 1, prev == "\n", cur == "\n",
                bool(prev) and _is_word(prev), bool(prev) and prev.isascii(),
                bool(cur) and _is_word(cur), bool(cur) and cur.isascii())

    def _search(self, text: str) -> bool:
        if self._fast is not None:
            return self._fast.search(text) is not None
        if len(self._sets) > MAX_DFA_STATES:
            self._reset_cache()
        closure_cache, step_cache, matched = self._closure_cache, self._step_cache, self._matched
        has_asserts = self._has_asserts
        n = len(text)
        pending = self._start_id
        i = 0
        while True:
            ctx = self._context(text, i) if has_asserts else None
            key = (pending, ctx)
            closed = closure_cache.get(key)
            if closed is None:
                closed = closure_cache[key] = self._closure(pending, text, i)
            if matched[closed]:
                return True
            if i == n:
                return False
            ch = text[i]
            skey = (closed, ch)
            pending = step_cache.get(skey)
            if pending is None:
                pending = step_cache[skey] = self._step(closed, ch)
            i += 1
            if not i & 1023:
                self._check_time()

    def _check_time(self) -> None:
        if time.perf_counter() > self._deadline:
            raise FilterTooCostly("re_filter took longer than %.2f s to evaluate" % self.time_budget)

    def search(self, text: str) -> bool:
        """Whether the pattern matches somewhere in ``text`` (budgets apply per call)."""
        self._work = 0
        self._deadline = time.perf_counter() + self.time_budget
        self._work += len(text)
        return self._search(text)

    def select(self, items: Iterable[object], *keys: Callable[[object], str]) -> List[object]:
        """The items for which the pattern matches at least one of
        ``key(item)``; one budget covers the whole call."""
        self._work = 0
        self._deadline = time.perf_counter() + self.time_budget
        chosen = []
        for item in items:
            for key in keys:
                text = key(item)
                self._charge(len(text) // 16 + 1)
                if self._search(text):
                    chosen.append(item)
                    break
            self._check_time()
        return chosen
