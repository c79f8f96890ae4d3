"""What the caller knows of a number before it is read, as forms and cheques do: how many
characters each line holds (`--digits 4`) or a pattern each line matches (`--pattern '\\d{3,6}'`,
`'19\\d\\d'`, `'[0-3]\\d/[01]\\d'`). The reader chooses, among its candidate readings of a line,
the best one that matches (reader.read_row).

Patterns are a safe part of regular-expression syntax: characters, `.`, `\\d`, classes such as
`[0-9]` or `[^0]`, each optionally counted (`?`, `*`, `+`, `{4}`, `{3,6}`, `{2,}`); `^` and `$`
at the ends are allowed and change nothing (a whole line must match). There are no groups or
alternation, so a pattern is a sequence of counted character sets, matched by a small dynamic
programme in time linear in the pattern and quadratic in the line: no pattern a caller sends to
the API can make matching slow, as backtracking regular expressions can be made to.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError

MAX_DIGITS = 100  # --digits takes 1 to this
MAX_PATTERN = 200  # characters in a pattern
DIGITS = frozenset("0123456789")
UNBOUNDED = 10**6


@dataclass(frozen=True)
class Atom:
    """One counted character set of a pattern: `low` to `high` characters each in `chars` (or,
    `negated`, not in it; `chars` None: any character)."""

    chars: frozenset[str] | None
    negated: bool
    low: int
    high: int

    def takes(self, c: str) -> bool:
        return self.chars is None or ((c in self.chars) != self.negated)


@dataclass(frozen=True)
class Expect:
    """What each line of the text must be: `atoms` in order; `text` says it for people."""

    atoms: tuple[Atom, ...]
    text: str

    def matches(self, line: str) -> bool:
        """Does the whole line match? can[i]: the first i characters match the atoms so far."""
        can = [True] + [False] * len(line)
        for a in self.atoms:
            nxt = [False] * (len(line) + 1)
            for i in (i for i, ok in enumerate(can) if ok):
                for j in range(i, min(len(line), i + a.high) + 1):
                    if j > i and not a.takes(line[j - 1]):
                        break
                    nxt[j] = nxt[j] or j - i >= a.low
            can = nxt
        return can[-1]

    def lengths(self) -> tuple[int, int]:
        """The fewest and most characters a matching line holds (the most capped at UNBOUNDED)."""
        return sum(a.low for a in self.atoms), min(UNBOUNDED, sum(a.high for a in self.atoms))


def expect(digits: int | None = None, pattern: str | None = None) -> Expect | None:
    """The Expect for `--digits N` (N characters, whichever the model's classes are) or
    `--pattern P`, None for neither; a UserError says what is wrong with a bad one."""
    if digits is not None and pattern is not None:
        raise UserError("give --digits or --pattern, not both (--pattern '\\d{4}' says what --digits 4 does)")
    if digits is not None:
        if not 1 <= digits <= MAX_DIGITS:
            raise UserError(f"--digits must be 1 to {MAX_DIGITS}, not {digits}")
        return Expect((Atom(None, False, digits, digits),), f"{digits} character{'s' * (digits != 1)}")
    if pattern is None:
        return None
    if len(pattern) > MAX_PATTERN:
        raise UserError(f"--pattern is {len(pattern)} characters long; at most {MAX_PATTERN} are taken")
    return Expect(tuple(_parse(pattern)), f"the pattern {pattern}")


def _parse(pattern: str) -> list[Atom]:
    body = pattern[1:] if pattern.startswith("^") else pattern
    body = body[:-1] if body.endswith("$") and not body.endswith("\\$") else body
    atoms, i = [], 0
    while i < len(body):
        (chars, negated), i = _atom(pattern, body, i)
        (low, high), i = _count(pattern, body, i)
        atoms.append(Atom(chars, negated, low, high))
    return atoms


def _bad(pattern: str, why: str) -> UserError:
    return UserError(f"--pattern {pattern!r}: {why}; a pattern takes characters, '.', '\\d' and classes such as "
                     "[0-9], each optionally counted (?, *, +, {4}, {3,6}); not groups or alternation")


def _atom(pattern: str, body: str, i: int) -> tuple[tuple[frozenset[str] | None, bool], int]:
    """The character set at body[i]: ((chars, negated), where it ends)."""
    c = body[i]
    if c == "\\":
        if i + 1 == len(body):
            raise _bad(pattern, "it ends with a lone backslash")
        e = body[i + 1]
        if e.isalnum() and e != "d":
            raise _bad(pattern, f"'\\{e}' is not supported (only '\\d', and '\\' before a symbol)")
        return ((DIGITS if e == "d" else frozenset(e)), False), i + 2
    if c == ".":
        return (None, False), i + 1
    if c == "[":
        return _class(pattern, body, i)
    if c in "()|*+?{}^$]":
        raise _bad(pattern, f"{c!r} at position {i + 1} is not supported there")
    return (frozenset(c), False), i + 1


def _class(pattern: str, body: str, i: int) -> tuple[tuple[frozenset[str], bool], int]:
    end = body.find("]", i + 2)
    if end < 0:
        raise _bad(pattern, "a '[' has no ']'")
    inner = body[i + 1 : end]
    negated = inner.startswith("^")
    inner = inner[negated:]
    chars, k = set(), 0
    while k < len(inner):
        if inner[k : k + 2] == "\\d":
            chars |= DIGITS
            k += 2
        elif k + 2 < len(inner) and inner[k + 1] == "-":
            if inner[k] > inner[k + 2]:
                raise _bad(pattern, f"the range {inner[k:k + 3]} runs backwards")
            chars |= {chr(x) for x in range(ord(inner[k]), ord(inner[k + 2]) + 1)}
            k += 3
        else:
            chars.add(inner[k])
            k += 1
    return (frozenset(chars), negated), end + 1


def _count(pattern: str, body: str, i: int) -> tuple[tuple[int, int], int]:
    """The count after an atom at body[i]: ((low, high), where it ends); (1, 1) for none."""
    if i < len(body) and body[i] in "?*+":
        return {"?": (0, 1), "*": (0, UNBOUNDED), "+": (1, UNBOUNDED)}[body[i]], i + 1
    if i >= len(body) or body[i] != "{":
        return (1, 1), i
    end = body.find("}", i)
    low, comma, high = body[i + 1 : end].partition(",") if end > 0 else ("x", "", "")
    try:
        n, m = int(low), (int(high) if high else UNBOUNDED) if comma else int(low)
    except ValueError:
        raise _bad(pattern, f"the count at position {i + 1} is not {{N}}, {{N,M}} or {{N,}}") from None
    if n > m or m > UNBOUNDED:
        raise _bad(pattern, f"the count {{{body[i + 1:end]}}} is empty or too large")
    return (n, m), end + 1
