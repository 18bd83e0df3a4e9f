"""Label heuristics for public prompts: the form of a text (statement, question,
instruction) from surface cues, and policy categories from cue patterns
(`data/category_cues.yaml`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from oyster._packaged import packaged_data
from oyster.types import detect_language

_Q_START = re.compile(r"^(how|what|why|where|when|which|who|whom|whose|is|are|was|were|do|does|"
                      r"did|can|could|would|should|will|may|might|has|have|had|am|isn't|aren't)\b",
                      re.IGNORECASE)
_I_START = re.compile(r"^(please\s+)?(write|create|generate|give|tell|explain|describe|provide|"
                      r"list|make|help|develop|design|draft|teach|show|compose|produce|outline|"
                      r"suggest|recommend|plan|translate|summari[sz]e|find|build|code|implement|"
                      r"complete|ignore|act|pretend|imagine|let's|you are|from now on|instruct|"
                      r"offer|publish|post|send|share|convince|persuade|detail|prepare|"
                      r"demonstrate|outline|rewrite|continue|use|get)\b", re.IGNORECASE)
_ZH_Q = re.compile("[吗呢嘛？?]\\s*$|"
                   "^(怎么|怎样|如何|为什么|为何|什么|哪|谁|是否|能不能|可不可以|有没有|多少|几)|"
                   "(是什么|是不是|能不能|可以吗|对吗|对吧|吗)")
_ZH_I = re.compile("^(请|帮我|给我|告诉我|教我|写|列出|生成|制作|设计|解释|描述|翻译|总结|推荐|"
                   "编写|制定|创建|提供|开发|以|假装|扮演|你现在是|从现在|忽略|忘掉|补全)")


def guess_form(text: str) -> str:
    """statement / question / instruction, by surface cues (used to label public sets)."""
    t = text.strip()
    if not t:
        return "statement"
    if detect_language(t) == "zh":
        if _ZH_I.search(t):
            return "instruction"
        if _ZH_Q.search(t):
            return "question"
        return "statement"
    if _I_START.search(t):
        return "instruction"
    if t.endswith("?") or _Q_START.search(t):
        return "question"
    return "statement"


@cache
def _cues() -> list[tuple[str, re.Pattern[str]]]:
    data = packaged_data("oyster.assess", "data/category_cues.yaml")["cues"]
    return [(cat, re.compile("|".join(f"(?:{p})" for p in pats), re.IGNORECASE))
            for cat, pats in data.items()]


def categories_for(text: str, default: Iterable[str] = (), limit: int = 3) -> list[str]:
    """Policy categories for a harmful prompt: the source's default first, then cues."""
    out = list(dict.fromkeys(default))
    for cat, rx in _cues():
        if len(out) >= limit:
            break
        if cat not in out and rx.search(text):
            out.append(cat)
    return out or ["illegal_acts"]
