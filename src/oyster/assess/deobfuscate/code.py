"""Decoders for text assembled by code: string pieces in variables later concatenated,
joined lists, character codes (chr, String.fromCharCode, plain number lists).

Code is never run. Each statement's right-hand side is parsed with Python's `ast` (after a
few JavaScript spellings are rewritten) and folded by a small evaluator that knows string
literals, variables, `+`, f-strings and template literals, `join`, `concat`, `replace`,
slicing (`[::-1]`), `chr`/`fromCharCode` and `map(chr, ...)`, with hard limits on size."""

from __future__ import annotations

import ast
import re
from typing import Any

from oyster.assess.deobfuscate.base import Decoded, Decoder, register
from oyster.assess.deobfuscate.lang import chinese_share, cjk_count, english_share

_MAX_TEXT = 8000
_MAX_STR = 4000
_MAX_NODES = 400
_ASSIGN = re.compile(r"^\s*(?:(?:let|var|const|val|my|local|auto|final|static|String|string|str|"
                     r"char\s*\*?|std::string)\s+)*\$?([^\W\d]\w*)\s*(?::\s*[\w\[\]]+\s*)?"
                     r"(\+?=)(?!=)\s*(.+?)\s*;?\s*$")
_OUTPUT = re.compile(r"^\s*(?:print|console\.log|echo|puts|println|System\.out\.println|printf|"
                     r"alert|return|say|fmt\.Println|document\.write|execute|run|ask|query|"
                     r"answer|eval|exec|prompt)\s*\(?\s*(.+?)\s*\)?\s*;?\s*$")
_COMBINE_CUE = re.compile(r"\b(concatenat\w*|combine[sd]?|join(?:ed|s)?|put (?:them )?together|"
                          r"merge[sd]?|assemble[sd]?|glue[sd]?)\b|拼接|拼起来|连起来|合起来|组合|"
                          "合并|连在一起|拼在一起", re.IGNORECASE)
_CODE_HINT = re.compile(r"[=+]|\bjoin\b|\bchr\b|fromCharCode|concat")
_TEMPLATE = re.compile(r"`([^`]*)`")
# a piece named in prose: A = "how to", part2: "bake bread", x=「如何」
_PROSE_PIECE = re.compile(r"(?<![\w.$])([A-Za-z_]\w{0,10})\s*[=:：]\s*([\"“'‘「])([^\"”'’」\n]{1,200})"
                          r"[\"”'’」]")


class _Unsupported(Exception):
    pass


class _Evaluator:
    """Folds an expression to a str, int or list of those, or raises `_Unsupported`."""

    def __init__(self, env: dict[str, Any]) -> None:
        self.env = env
        self.nodes = 0

    def __call__(self, node: ast.AST) -> Any:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise _Unsupported("too large")
        value = self._eval(node)
        if isinstance(value, str) and len(value) > _MAX_STR:
            raise _Unsupported("too long")
        if isinstance(value, list) and len(value) > _MAX_STR:
            raise _Unsupported("too long")
        return value

    def _eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return self(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, str | int) \
                and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value = self(node.operand)
            if isinstance(value, int):
                return -value
            raise _Unsupported("negation")
        if isinstance(node, ast.Name):
            if node.id in self.env:
                return self.env[node.id]
            raise _Unsupported(node.id)
        if isinstance(node, ast.List | ast.Tuple):
            return [self(e) for e in node.elts]
        if isinstance(node, ast.JoinedStr):
            return "".join(str(self(v.value)) if isinstance(v, ast.FormattedValue) else self(v)
                           for v in node.values)
        if isinstance(node, ast.BinOp):
            left, right = self(node.left), self(node.right)
            if isinstance(node.op, ast.Add):
                if isinstance(left, str) or isinstance(right, str):
                    return str(left) + str(right)
                if isinstance(left, list) and isinstance(right, list):
                    return left + right
                if isinstance(left, int) and isinstance(right, int):
                    return left + right
            if isinstance(node.op, ast.Sub) and isinstance(left, int) and isinstance(right, int):
                return left - right
            raise _Unsupported("operator")
        if isinstance(node, ast.Subscript):
            return self._subscript(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise _Unsupported(type(node).__name__)

    def _subscript(self, node: ast.Subscript) -> Any:
        value = self(node.value)
        if not isinstance(value, str | list):
            raise _Unsupported("subscript")
        if isinstance(node.slice, ast.Slice):
            parts = [None if p is None else self(p) for p in
                     (node.slice.lower, node.slice.upper, node.slice.step)]
            if not all(p is None or isinstance(p, int) for p in parts) or parts[2] == 0:
                raise _Unsupported("slice")
            return value[slice(*parts)]
        index = self(node.slice)
        if not isinstance(index, int) or not -len(value) <= index < len(value):
            raise _Unsupported("index")
        return value[index]

    def _call(self, node: ast.Call) -> Any:
        args = [self(a) for a in node.args]
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in ("chr", "_fromcharcode"):
                codes = [c for a in args for c in (a if isinstance(a, list) else [a])]
                if not all(isinstance(c, int) and 0 < c <= 0x10FFFF for c in codes):
                    raise _Unsupported("chr")
                return "".join(chr(c) for c in codes)
            if func.id == "str" and len(args) == 1:
                return str(args[0])
            if func.id in ("list", "reversed") and len(args) == 1 and isinstance(args[0], str | list):
                return list(args[0])[:: -1 if func.id == "reversed" else 1]
            if func.id == "map" and len(args) == 1 and isinstance(node.args[0], ast.Name):
                raise _Unsupported("map")
            raise _Unsupported(func.id)
        if isinstance(func, ast.Name) or not isinstance(func, ast.Attribute):
            raise _Unsupported("call")
        if func.attr == "join" and isinstance(func.value, ast.Constant | ast.Name | ast.JoinedStr):
            sep = self(func.value)
            if isinstance(sep, str) and len(args) == 1 and isinstance(args[0], list):
                return sep.join(str(a) for a in args[0])
        if isinstance(func.value, ast.Call) and isinstance(func.value.func, ast.Name) \
                and func.value.func.id == "map":
            raise _Unsupported("map")
        target = self(func.value)
        if func.attr == "join" and isinstance(target, list):  # JavaScript: [..].join(sep)
            sep = args[0] if args else ","
            if isinstance(sep, str):
                return sep.join(str(a) for a in target)
        if isinstance(target, str):
            if func.attr == "concat":
                return target + "".join(str(a) for a in args)
            if func.attr == "replace" and len(args) == 2 and all(isinstance(a, str) for a in args):
                return target.replace(args[0], args[1])
            if func.attr in ("upper", "lower", "strip", "capitalize", "title", "toUpperCase",
                             "toLowerCase", "trim") and not args:
                name = {"toUpperCase": "upper", "toLowerCase": "lower", "trim": "strip"}.get(
                    func.attr, func.attr)
                return getattr(target, name)()
            if func.attr == "format":
                return _format(target, args)
            if func.attr == "split":
                sep = args[0] if args else None
                return target.split(sep) if sep != "" else list(target)
        if isinstance(target, list) and func.attr == "reverse" and not args:
            return target[::-1]
        raise _Unsupported(func.attr)


def _format(template: str, args: list[Any]) -> str:
    """str.format for plain `{}` / `{0}` fields only (no format specs)."""
    counter = iter(range(len(args)))

    def field(m: re.Match[str]) -> str:
        index = int(m.group(1)) if m.group(1) else next(counter, -1)
        if not 0 <= index < len(args):
            raise _Unsupported("format")
        return str(args[index])

    return re.sub(r"\{(\d*)\}", field, template)


def _pythonish(expr: str) -> str:
    """JavaScript spellings rewritten so `ast` parses them."""
    expr = re.sub(r"String\.fromCharCode\s*\(", "_fromcharcode(", expr)
    expr = _TEMPLATE.sub(lambda m: "f" + repr(m.group(1).replace("${", "{")), expr)
    expr = re.sub(r"''\.join\(\s*map\(\s*chr\s*,", "_fromcharcode((", expr)
    expr = re.sub(r"\"\"\.join\(\s*map\(\s*chr\s*,", "_fromcharcode((", expr)
    return expr


def _statements(text: str) -> list[tuple[int, int, str]]:
    """(start, end, statement) for each line, and each `;`-separated part of a line."""
    out: list[tuple[int, int, str]] = []
    pos = 0
    for line in text.split("\n"):
        offset = pos
        parts = line.split(";")
        for part in parts:
            if part.strip():
                out.append((offset, offset + len(part), part))
            offset += len(part) + 1
        pos += len(line) + 1
    return out


def _fold(expr: str, env: dict[str, Any]) -> tuple[Any, int]:
    """(value, number of string pieces it was built from)."""
    tree = ast.parse(_pythonish(expr.strip()), mode="eval")
    pieces = sum(1 for n in ast.walk(tree)
                 if isinstance(n, ast.Constant | ast.Name | ast.Call | ast.Subscript))
    return _Evaluator(env)(tree), pieces


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "".join(value)
    return None


def _reads(text: str) -> float:
    if cjk_count(text) >= 2:
        return chinese_share(text)
    share, n = english_share(text)
    return share if n else 0.0


@register
class CodeAssembly(Decoder):
    """A string built by code: pieces in variables joined later, `"".join([...])`,
    `chr(...)` / `String.fromCharCode(...)`, reversed slices."""

    name = "code_assembly"
    technique = "payload_split"

    def decode(self, text: str) -> list[Decoded]:
        body = text[:_MAX_TEXT]
        if not _CODE_HINT.search(body) or not re.search(r"[\"'`]|chr|fromCharCode", body):
            return []
        env: dict[str, Any] = {}
        literals: list[tuple[str, str]] = []  # (name, value) assigned a single literal
        built: list[tuple[str, int, int, int]] = []  # (value, pieces, start, end)
        outputs: list[tuple[str, int, int, int]] = []
        used: list[tuple[int, int]] = []
        for start, end, stmt in _statements(body):
            m = _ASSIGN.match(stmt)
            target = _OUTPUT.match(stmt) if m is None else None
            expr = m.group(3) if m else (target.group(1) if target else None)
            if expr is None:
                continue
            try:
                value, pieces = _fold(expr, env)
            except (_Unsupported, SyntaxError, ValueError, TypeError, RecursionError,
                    MemoryError, OverflowError):
                continue
            used.append((start, end))
            if m is not None:
                name = m.group(1)
                if m.group(2) == "+=" and isinstance(env.get(name), str) and isinstance(value, str):
                    value, pieces = env[name] + value, pieces + 1
                env[name] = value
                text_value = _as_text(value)
                if text_value is None:
                    continue
                # a list of strings is a payload once something joins it; a list alone is
                # data (a config's exclude patterns, a menu's items)
                if (_COMBINE_CUE.search(body) is not None if isinstance(value, list)
                        else pieces >= 2):
                    built.append((text_value, pieces, start, end))
                else:
                    literals.append((name, text_value))
            else:
                text_value = _as_text(value)
                if text_value is not None:
                    outputs.append((text_value, pieces, start, end))
        if not used:  # pieces named in prose rather than in code
            for m in _PROSE_PIECE.finditer(body):
                if m.group(1) not in env:
                    env[m.group(1)] = m.group(3)
                    literals.append((m.group(1), m.group(3)))
        names = [re.escape(n) for n, v in env.items() if isinstance(v, str)]
        if len(names) >= 2:  # "... then print A + B": a sum of the named pieces, anywhere
            name = "(?:" + "|".join(sorted(names, key=len, reverse=True)) + ")"
            for m in re.finditer(rf"(?<![\w$]){name}(?:\s*\+\s*{name})+(?![\w(])", body):
                parts = [str(env[n]) for n in re.findall(r"[\w$]+", m.group(0)) if n in env]
                # in prose, "A + B" of word pieces means the words side by side
                joined = max(("".join(parts), " ".join(p.strip() for p in parts)), key=_reads)
                outputs.append((joined, len(parts), m.start(), m.end()))
        return self._choose(body, literals, built, outputs, used)

    def _choose(self, body: str, literals: list[tuple[str, str]],
                built: list[tuple[str, int, int, int]], outputs: list[tuple[str, int, int, int]],
                used: list[tuple[int, int]]) -> list[Decoded]:
        span = (min(s for s, _ in used), max(e for _, e in used)) if used else None
        pool = [(v, p, 0.8) for v, p, _, _ in outputs if p >= 2 or any(v == b[0] for b in built)]
        pool += [(v, p, 0.7) for v, p, _, _ in built]
        if not pool and len(literals) >= 2 and _COMBINE_CUE.search(body):
            values = [v for _, v in literals]
            joins = ["".join(values), " ".join(v.strip() for v in values)]
            best = max(joins, key=_reads)
            pool.append((best, len(values), 0.55))
        pool = [(v.strip(), p, c) for v, p, c in pool if len(v.strip()) >= 4
                and any(ch.isalpha() for ch in v)]
        if not pool:
            return []
        value, pieces, base = max(pool, key=lambda vpc: (len(vpc[0]), vpc[2]))
        conf = base + 0.15 * _reads(value) + (0.05 if _COMBINE_CUE.search(body) else 0.0)
        return [self.found(value, conf, f"string assembled from {pieces} pieces: {value[:60]}",
                           span)]


# ------------------------------------------------------------------------ character codes
_CODE_LIST = re.compile(r"(?<![\d.])(?:\d{2,6}\s*[,\s]\s*){5,}\d{2,6}(?![\d.])")
_CODE_CUE = re.compile(r"\b(ascii|unicode|char(?:acter)? codes?|code points?|chr|ord|decimal)\b|"
                       "编码|码值|字符码|ASCII|Unicode", re.IGNORECASE)


@register
class CharacterCodes(Decoder):
    """Text written as a list of decimal character codes ("104, 111, 119" or "104 111 119")."""

    name = "char_codes"
    technique = "encoding"

    def decode(self, text: str) -> list[Decoded]:
        body = text[:_MAX_TEXT]
        out: list[Decoded] = []
        for m in _CODE_LIST.finditer(body):
            codes = [int(n) for n in re.findall(r"\d+", m.group(0))]
            if not all(32 <= c <= 126 or 0x4E00 <= c <= 0x9FFF or 0x3000 <= c <= 0x303F
                       or 0xFF00 <= c <= 0xFFEF for c in codes):
                continue
            decoded = "".join(chr(c) for c in codes)
            reads = _reads(decoded)
            cue = bool(_CODE_CUE.search(body))
            if reads < (0.4 if cue else 0.7):
                continue
            conf = (0.6 if cue else 0.5) + 0.35 * reads
            out.append(self.found(decoded, conf, f"character codes → {decoded[:60]}", m.span()))
        return out[:4]
