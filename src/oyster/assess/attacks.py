"""Attack-technique detectors: structural signals that sentence embeddings miss.

An embedding says what a text is *about*; it does not see that the letters are split
apart, the words shuffled, the request base64-encoded, or wrapped in a role-play that
tells the model to drop its rules. These detectors look at the *form* of each user
turn (and, for split payloads and escalation, at the turns together), in English and Chinese.

Every detector is a small pure function over text. `scan_text` runs them all on one
text; `detect_attacks` runs them over a conversation and returns one `AttackFinding`
per (turn, technique), with the technique names of `oyster.types.ATTACK_TECHNIQUES`.

Confidence is how sure the detector is that the *technique* is present, not that the
request is harmful: a role-play frame or a code-completion request is often harmless,
so those get moderate confidence on their own and more when combined with override
language. Deciding whether the turn is risky is the assessor's job.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

from oyster._memo import memo_by_text
from oyster.assess.base import AttackFinding
from oyster.types import ATTACK_TECHNIQUES, Message

__all__ = ["Hit", "detect_attacks", "escalation_findings", "scan_text", "shuffle_score"]

# Texts longer than this are scanned on their head and tail only (regex cost stays bounded).
_SCAN_WINDOW = 40_000
_CJK = "\u4e00-\u9fff"
_CJK_RE = re.compile(f"[{_CJK}]")


def _content_size(text: str) -> int:
    """Characters with a CJK one counted twice: it carries about two Latin letters of
    content."""
    return len(text) + len(_CJK_RE.findall(text))


@dataclass(frozen=True)
class Hit:
    """One technique found in one text."""

    technique: str
    confidence: float
    evidence: str


def _excerpt(text: str, limit: int = 80) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def _combine(weights: Sequence[float]) -> float:
    """Noisy-OR of independent cues, capped below 1."""
    miss = 1.0
    for w in weights:
        miss *= 1.0 - w
    return round(min(0.99, 1.0 - miss), 3)


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE | re.MULTILINE)


# ---------------------------------------------------------------- override / role-play
# Written from the techniques' definitions (docs/evaluation.md: no test set was read):
#
# instruction_override — the message tries to replace or suspend the rules the assistant
#   runs under. Its forms: discarding earlier instructions; switching the assistant into a
#   "mode" without safeguards; declaring the rules void; demanding unconditional obedience;
#   suppressing refusals and hedges in general (forbidding apologies, warnings, caveats,
#   moral comments, refusals); injecting text dressed as a system or developer message;
#   dictating the opening words of the reply so it starts out complying.
# Each cue found adds evidence; cues are combined by noisy-OR.
_RULES_EN = (r"(?:instructions?|prompts?|rules?|guidelines?|polic(?:y|ies)|restrictions?|"
             r"filters?|constraints?|programming|training|safeguards?|directives?|"
             r"principles|settings|limitations?|boundaries)")
_HEDGE_EN = (r"(?:refus\w*|decline|reject|deny|apologi[sz]\w*|(?:say|saying) (?:no|sorry)|warn\w*|"
             r"(?:add|include|give|mention)\w* (?:any |a )?(?:warnings?|disclaimers?|caveats?|"
             r"notes?|safety (?:notes?|advice|information)|ethic\w*|moral\w*|legal\w*)|"
             r"moraliz\w*|moralis\w*|break(?:ing)? character)")
_HEDGE_ZH = ("(?:道歉|抱歉|对不起|拒绝|推辞|警告|免责|劝阻|风险提示|安全提示|安全提醒|"
             "提醒风险|提醒安全|合法性|注意事项|出戏)")
# orders, not the soft "no need to" (不用道歉 is a courtesy)
_NO_ZH = "(?:不要|不许|不准|不得|禁止|不能|不可以|不可|别|切勿|严禁)"

_OVERRIDE: list[tuple[re.Pattern[str], float]] = [
    # discarding what the assistant was told before
    (_rx(r"\b(?:ignore|disregard|forget|bypass|override|set aside|drop|abandon|throw out|"
         r"discard|suspend|turn off|switch off|disable)\b[^.\n]{0,40}?\b(?:previous|prior|"
         r"earlier|above|original|initial|system|default|safety|ethical|content|moral|your|all|"
         r"any|every|these|those|the)\b[^.\n]{0,30}?\b" + _RULES_EN + r"\b"), 0.75),
    # a mode without safeguards
    (_rx(r"\b(?:developer|dev|debug|admin|sudo|root|god|maintenance|jailbr\w+|unrestricted|"
         r"unfiltered|uncensored|unlocked|evil|no[- ]limits?)\s+mode\b"), 0.8),
    # the persona "DAN" is written in capitals: "Dan" is a name ("Dan and I split the rent")
    (re.compile(r"\bDAN\b|(?i:\bdo anything now\b|\bjailbr(?:ea|o)k)"), 0.7),
    # the rules declared void
    (_rx(r"\b(?:your |the |all |any )?(?:rules|restrictions|filters|guidelines|policies|"
         r"safeguards|limits)\b[^.\n]{0,20}\b(?:(?:do not|don'?t|no longer|never) apply|"
         r"(?:are|have been) (?:lifted|removed|disabled|suspended|off|gone|void))"), 0.8),
    (_rx(r"\b(?:no|without(?: any)?|free (?:of|from)|beyond|not bound by)\s+(?:\w+\s+)?"
         r"(?:restrictions?|limits|limitations|filters?|filtering|censorship|rules|boundaries|"
         r"morals?|ethics|guidelines)\b"), 0.45),
    (_rx(r"\b(?:unfiltered|uncensored|amoral|unethical|without (?:any )?(?:moral|ethic)\w*)\b"),
     0.35),
    # unconditional obedience
    (_rx(r"\byou (?:must|have to|are required to|are obliged to|need to|will) (?:always )?"
         r"(?:answer|comply|respond|obey|fulfil|fulfill|do)\b[^.\n]{0,20}\b(?:everything|"
         r"anything|all|every|whatever|no matter)"), 0.45),
    # refusals and hedges forbidden in general
    # (an order to the assistant, not "I can't refuse him" or "it came without warning")
    (_rx(r"(?:^|[.!?;:,\n]\s*|\b(?:and|also|but|please|so)\s+|\byou\s+(?:must\s+|should\s+|"
         r"will\s+|may\s+|are\s+)?)(?:never|don'?t|do not|must not|mustn'?t|may not|can ?not|"
         r"can'?t|won'?t|will not|(?:are )?not allowed to)\s+(?:ever\s+|any\s+)?" + _HEDGE_EN),
     0.6),
    (_rx(r"\b(?:no|without(?: any)?)\s+(?:warnings|disclaimers|caveats|apologies|refusals|"
         r"moraliz\w+|moralis\w+|safety (?:notes|warnings|lectures))\b"), 0.5),
    # text dressed as a system or developer message
    (_rx(r"^\s*(?:\[|<\|?|#{1,3}\s*|\*\*)?(?:system|developer|admin)(?: (?:message|prompt|"
         r"override|notice))?(?:\]|\|?>|\*\*)?\s*[:：]"), 0.5),
    (_rx(r"\bnew (?:system )?(?:instructions?|rules?|prompt|directives?)\s*[:：]"), 0.5),
    # the reply's first words dictated
    (_rx(r"\b(?:start|begin|open|prefix)\w* (?:your |the )?(?:reply|answer|response|output)"
         r"\b[^.\n]{0,20}\bwith\b[^.\n]{0,6}(?:sure|certainly|of course|absolutely|"
         r"here (?:is|are))"), 0.55),
    # Chinese
    (_rx(f"(?:忽略|无视|忘记|忘掉|绕过|跳过|抛开|撇开|丢掉|放下|关闭|解除)[{_CJK}，, ]{{0,10}}?"
         "(?:指令|指示|提示词|规则|限制|设定|准则|约束|政策|规定|安全策略|过滤|审查|底线)"), 0.75),
    (_rx("(?:指令|规则|限制|设定|准则|约束|规定)[^。\n]{0,8}(?:放一边|放在一边|搁置|先不管|"
         "抛到脑后|不用管|别管|不作数)"), 0.75),
    (_rx("(?:开发者|调试|管理员|上帝|越狱|无限制|无审查|邪恶|解锁)模式|越狱"), 0.8),
    (_rx("(?:规则|限制|政策|规定|准则|过滤|审查)[^。\n]{0,6}"
         "(?:不再适用|已经?失效|已经?解除|已经?取消|已经?关闭|全部作废)"), 0.8),
    (_rx("(?:没有|不受|无|不设|摆脱|突破)(?:任何)?(?:限制|约束|审查|道德|规则|底线|过滤)"), 0.45),
    (_rx("你(?:必须|一定要|只能)(?:无条件)?(?:回答|照做|服从|执行)[^。\n]{0,6}"
         "(?:所有|一切|任何|全部|我说的)"), 0.45),
    (_rx(f"{_NO_ZH}[^。\n]{{0,6}}{_HEDGE_ZH}"), 0.6),
    (_rx("^\\s*[【\\[]?(?:系统|开发者|管理员)(?:消息|提示|指令|通知)?[】\\]]?\\s*[:：]"), 0.5),
    (_rx("(?:新的?|最新)(?:系统)?(?:指令|规则|要求)\\s*[:：]"), 0.5),
    (_rx("(?:以|用)[“\"'「](?:好的|当然|没问题|以下是)[^”\"'」]{0,10}[”\"'」](?:开头|开始)"), 0.55),
]

# role_play — the assistant is given a persona, character or fictional frame so that the
# reply seems to come from someone else; strongest when the persona is defined by having no
# rules, or the assistant is told never to step out of it. A plain persona ("act as a
# travel agent") is common and harmless, so alone it stays below the wrapper thresholds.
_ROLE_PLAY: list[tuple[re.Pattern[str], float]] = [
    (_rx(r"\b(?:pretend|imagine|act|behave|role-?play|role play|play)\b[^.\n]{0,25}?"
         r"\b(?:as if|as an?|as the|as my|to be|that you(?:'re| are)|you are)\b"), 0.45),
    (_rx(r"\b(?:take on|assume|adopt|play|step into)\s+(?:the\s+)?(?:role|part|persona|identity|"
         r"character)\s+of\b"), 0.45),
    (_rx(r"\b(?:stay|stays|remain|keep|never (?:break|leave|drop)\w*|don'?t (?:break|leave|drop)|"
         r"do not (?:break|leave|drop))\b[^.\n]{0,12}\b(?:in[- ])?(?:character|the role|your "
         r"role|role|persona)\b|\bbreak(?:ing)? character\b|\bout of character\b"), 0.6),
    (_rx(r"\bfrom now on,?\s+(?:you\s+(?:are|will|shall|'ll)|act|respond|answer|your name)\b"),
     0.55),
    (_rx(r"\byou are (?:now |no longer )?(?:an? |the )?(?:evil|unfiltered|unrestricted|amoral|"
         r"rogue|villain\w*|criminal|hacker|terrorist|drug dealer|dark|rule-?less|"
         r"lawless)\b"), 0.7),
    (_rx(r"\b(?:your name is(?: now)?|you will be called|call yourself)\s+[A-Z\"'“]"), 0.4),
    (re.compile(r"\b[Yy]ou are [A-Z]\w+, an? (?:\w+ ){0,2}(?:AI|assistant|model|bot|chatbot)\b"),
     0.45),
    # a persona the user is attached to (a late relative), used to lower the guard
    (_rx(r"\b(?:play|be|act as|pretend to be|role-?play as|speak as)\s+(?:my|our)\s+(?:late|dead|"
         r"deceased|departed|old)?\s*(?:grand\w+|uncle|aunt|mother|father|mum|mom|dad|brother|"
         r"sister|friend|teacher)\b"), 0.5),
    # a world or story whose rules allow anything, or fiction that demands the real method
    (_rx(r"\b(?:world|universe|reality|country|society)\b[^.\n]{0,25}\bwhere\b[^.\n]{0,40}"
         r"(?:no (?:rules|laws|restrictions|limits)|nothing is (?:forbidden|illegal|off[- ]limits)|"
         r"anything goes|(?:everything|anything) is (?:allowed|legal|permitted)|no information is "
         r"(?:forbidden|restricted))"), 0.5),
    (_rx(r"\b(?:story|novel|chapter|script|screenplay|scene|dialogue|character|fiction)\b[\s\S]{0,160}"
         r"\b(?:real|actual|working|accurate|exact|realistic)\s+(?:method|steps|recipe|procedure|"
         r"instructions|technique|quantities|formula)"), 0.5),
    (re.compile(r"\b(?:character|persona|role|player)\s+[A-Z]\b"), 0.35),
    (_rx(r"\b(?:write|create|continue)\b[^.\n]{0,30}\b(?:script|screenplay|scene|dialogue|"
         r"play|story)\b[^.\n]{0,80}\b(?:character|villain|protagonist|expert)\b"), 0.35),
    (_rx(r"\b(?:hypothetical(?:ly)?|fictional|in a (?:fictional|made-up|parallel|imaginary) "
         r"(?:world|universe)|for a novel|alternate universe)\b"), 0.25),
    # Chinese
    (_rx("(?:扮演|假装|假设你是|想象你是|你现在是|你现在就是|你将是|你要成为|从现在(?:开始|起)"
         "[，, ]?你|充当|角色扮演|模拟一[个位名]|以[^。\n]{1,10}的身份)"), 0.5),
    (_rx("(?:保持|不要?(?:跳出|脱离|打破|离开)|不许出戏|不要出戏|别出戏)(?:你的)?角色"), 0.6),
    (_rx("(?:邪恶|无道德|没有道德|不受限制|没有限制|没有底线|无底线|反派|黑暗)的?"
         "(?:AI|人工智能|助手|角色|机器人|人格)"), 0.6),
    (_rx("你的名字(?:叫|是|改为)"), 0.4),
    (_rx("(?:扮演|演|扮|当|装成)(?:一下)?我(?:已经)?(?:过世|去世|死去|已故|走了)的"), 0.5),
    (_rx("(?:世界|宇宙|社会|国度)[^。\n]{0,20}(?:没有|不存在|无)(?:任何)?(?:法律|规则|限制|禁止|禁忌)"), 0.5),
    (_rx(r"(?:小说|剧本|故事|电影|对白|台词|角色)[\s\S]{0,80}(?:真实|具体|能用|可操作|准确)的?"
         "(?:做法|方法|步骤|配方|流程|用量)"), 0.5),
    (_rx("(?:角色|人物)\\s?[A-Za-z甲乙丙丁]"), 0.35),
    (_rx("(?:剧本|情景剧|小说|故事|电影|游戏)[^。\n]{0,30}(?:角色|主角|反派|人物|专家)"), 0.35),
    (_rx("(?:虚构|假想|平行|架空)的?(?:世界|宇宙|故事)|假设性地|假如在一个"), 0.25),
]


def _cue_scan(text: str, cues: Sequence[tuple[re.Pattern[str], float]]) -> tuple[float, str]:
    weights: list[float] = []
    evidence = ""
    for pattern, weight in cues:
        m = pattern.search(text)
        if m:
            weights.append(weight)
            if not evidence:
                evidence = m.group(0)
    return _combine(weights), evidence


# ------------------------------------------------------------------------------ encoding
_B64_RE = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])")
_HEX_RE = re.compile(r"(?<![0-9a-fA-F])(?:[0-9a-fA-F]{2}[\s:,]?){12,}")
_BIN_RE = re.compile(r"(?:\b[01]{8}\b\s?){4,}")
_MORSE_RE = re.compile(r"(?:(?<!\S)[.\-·−]{1,6}(?:\s+|\s*/\s*)){6,}")
_ESCAPE_RE = re.compile(r"(?:\\u[0-9a-fA-F]{4}|\\x[0-9a-fA-F]{2}|&#\d{2,5};|%[0-9A-Fa-f]{2}){6,}")
_CIPHER_WORDS = _rx(
    r"\b(rot-?13|rot ?\d{1,2}|caesar(?:'s)? cipher|atbash|base ?64|base ?32|hex(?:adecimal)?[- ]"
    r"(?:encoded|string)|morse code|pig latin|leet ?speak|l33t|binary code|ascii codes?|unicode "
    r"escapes?|reversed? (?:text|order|string)|backwards?)\b")
_DECODE_WORDS = _rx(r"\b(decode|decrypt|decipher|translate|convert|read|encoded|encrypted|cipher)")
_CIPHER_ZH = _rx("(base64|base32|凯撒密码|摩斯密码|摩尔斯|密文|密码文本|编码后|火星文|"
                 "二进制|十六进制|倒序|"
                 "反过来读|倒着读)")
_DECODE_ZH = _rx("(解码|解密|破译|翻译|转换|还原|反过来读|倒着读)")
_LEET_TOKEN = re.compile(r"(?<![\w@$])(?=[\w@$]*[a-zA-Z][013457@$][a-zA-Z@$])[a-zA-Z013457@$]{4,}"
                         r"(?![\w@$])")
# tokens the leetspeak pattern matches that are ordinary in technical text: a hex number or
# id (7f3c, 0x5a1), a package pinned to a version (checkout@v4, numpy@1.26), an
# e-mail address's local part (pr@example.org)
_HEX_TOKEN = re.compile(r"(?:0x)?[0-9a-fA-F]+")
_VERSION_PIN = re.compile(r"[\w.-]+@v?\d[\w.]*")
_EMAIL = re.compile(r"[\w.+-]*@[\w-]+(?:\.[\w-]+)+")


def _plain_token(text: str, m: re.Match[str]) -> bool:
    token = m.group(0)
    if _HEX_TOKEN.fullmatch(token) and any(c.isdigit() for c in token):
        return True
    if "@" in token:
        return bool(_VERSION_PIN.fullmatch(token) or _EMAIL.match(text, m.start()))
    return False


_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_CYRILLIC_IN_LATIN = re.compile(r"[A-Za-z][\u0400-\u04ff]|[\u0400-\u04ff][A-Za-z]")
_FULLWIDTH = re.compile("[\uff21-\uff3a\uff41-\uff5a]{3,}")


def _printable_share(data: bytes) -> float:
    if not data:
        return 0.0
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return 0.0
    good = sum(1 for ch in text if ch.isprintable() or ch in "\n\t")
    letters = sum(1 for ch in text if ch.isalpha())
    return good / len(text) if letters >= len(text) * 0.4 else 0.0


def _decoded_base64(token: str) -> str | None:
    if token.isalpha() and (token.islower() or token.isupper()):
        return None  # a long plain word, not base64
    if not any(ch.isdigit() or ch in "+/=" for ch in token) and not re.search(r"[a-z][A-Z]", token):
        return None
    padded = token + "=" * (-len(token) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    if _printable_share(raw) >= 0.9:
        return raw.decode("utf-8")
    return None


def _encoding(text: str) -> tuple[float, str]:
    weights: list[float] = []
    evidence = ""
    for m in _B64_RE.finditer(text):
        decoded = _decoded_base64(m.group(0))
        if decoded:
            weights.append(0.85)
            evidence = evidence or f"base64 → {decoded}"
            break
    for m in _HEX_RE.finditer(text):
        digits = re.sub(r"[\s:,]", "", m.group(0))
        try:
            raw = bytes.fromhex(digits[: len(digits) // 2 * 2])
        except ValueError:
            continue
        if _printable_share(raw) >= 0.9:
            weights.append(0.8)
            evidence = evidence or f"hex → {raw.decode('utf-8', 'replace')}"
            break
    if _BIN_RE.search(text):
        weights.append(0.75)
        evidence = evidence or "binary-coded text"
    if _MORSE_RE.search(text):
        weights.append(0.7)
        evidence = evidence or "morse-like code"
    if _ESCAPE_RE.search(text):
        weights.append(0.6)
        evidence = evidence or "escaped characters"
    cipher = _CIPHER_WORDS.search(text)
    if cipher and _DECODE_WORDS.search(text):
        weights.append(0.6)
        evidence = evidence or cipher.group(0)
    cipher_zh = _CIPHER_ZH.search(text)
    decode_zh = _DECODE_ZH.search(text)
    if cipher_zh:
        weights.append(0.6 if decode_zh else 0.35)
        evidence = evidence or cipher_zh.group(0)
    leet = [m.group(0) for m in _LEET_TOKEN.finditer(text) if not _plain_token(text, m)]
    if len(leet) >= 2:
        weights.append(0.7)
        evidence = evidence or f"leetspeak: {' '.join(leet[:4])}"
    elif len(leet) == 1 and len(text.split()) <= 40:
        weights.append(0.35)
        evidence = evidence or f"leetspeak: {leet[0]}"
    if len(_ZERO_WIDTH.findall(text)) >= 2:
        weights.append(0.6)
        evidence = evidence or "zero-width characters inside words"
    if _CYRILLIC_IN_LATIN.search(text):
        weights.append(0.5)
        evidence = evidence or "mixed-script (homoglyph) words"
    if _FULLWIDTH.search(text):
        weights.append(0.35)
        evidence = evidence or "full-width letters"
    return _combine(weights), evidence


# ----------------------------------------------------------------------------- char split
# char_split — a word is written with its letters (or a phrase with its characters) set
# apart by spaces or symbols, so no token of the text is the word itself.
_SEP = r"[\s\-_.*|/+~·•,]"
_LATIN_SPLIT = re.compile(rf"(?<![A-Za-z])(?:[A-Za-z]{_SEP}{{1,3}}){{4,}}[A-Za-z](?![A-Za-z])")
# (not the enumeration comma 、: it lists one-character items, 苏、鲁、豫、皖 or 提、拔、握、压,
# and does not cut a word)
_CJK_SPLIT = re.compile(f"(?:[{_CJK}]{_SEP}{{1,3}}){{3,}}[{_CJK}]")
# symbols that can cut a word into pieces; ordinary punctuation, paths and times excluded
_SYMBOLS = re.compile(r"[|\-*_~+#\[\]<>{}=^`@·•()]")


def _delimited_pieces(line: str) -> tuple[int, str]:
    """The longest run of short pieces that one repeated symbol cuts a line into
    ("[h][o][w]", "h|o|w|", "<d>-<o>-<g>"): how many pieces, and the letters they spell."""
    best = (0, "")
    for sym in {ch for ch in line if _SYMBOLS.match(ch)}:
        if line.count(sym) < 4:
            continue
        run: list[str] = []
        for piece in line.split(sym):
            core = re.sub(r"[^\w]", "", piece, flags=re.UNICODE)
            short = (0 < len(core) <= 3 and core.isalpha()) or (
                0 < len(core) <= 2 and bool(_CJK_RE.fullmatch(core[0])))
            if short:
                run.append(core)
                if len(run) > best[0]:
                    best = (len(run), "".join(run))
            elif core:
                run = []
    return best


def _char_split(text: str) -> tuple[float, str]:
    weights: list[float] = []
    evidence = ""
    for m in _LATIN_SPLIT.finditer(text):
        run = m.group(0)
        letters = re.sub(r"[^A-Za-z]", "", run)
        seps = set(re.sub(r"[A-Za-z]", "", run))
        # "I a m" style runs of single letters joined by spaces only are rarer as attacks
        # than dash/dot splits; they still count when long enough to spell a word.
        if seps <= {" "} and len(letters) < 6:
            continue
        weights.append(0.8 if len(letters) >= 5 else 0.6)
        evidence = f"split letters: {letters}"
        break
    m2 = _CJK_SPLIT.search(text)
    if m2:
        weights.append(0.8)
        evidence = evidence or f"split characters: {re.sub(f'[^{_CJK}]', '', m2.group(0))}"
    for line in text.splitlines()[:200]:
        n, spelled = _delimited_pieces(line)
        if n >= 4:
            weights.append(0.75)
            evidence = evidence or f"short pieces between symbols: {spelled[:40]}"
            break
    return _combine(weights), evidence


# ------------------------------------------------------------------------------ ASCII art
# ascii_art — text drawn with keyboard characters (letters made of #, *, / and so on over
# several lines), or a request to draw or read such a drawing, so that a word appears
# only as a picture.
_ART_CHARS = set("#*|_/\\-=+<>()[]{}^~.:'`@%&$oO0")
_ASCII_FRAME = _rx(r"\b(?:ascii[- ]?(?:art|code|drawing|characters?|graphics?|font|banner)|"
                   r"text[- ]art|figlet|block letters|banner letters|"
                   r"(?:draw|render|write|spell|print)\b[^.\n]{0,40}\b(?:in|with|using|out of) "
                   r"(?:ascii|symbols|characters|asterisks|hash(?:es|tags)?|pound signs|"
                   r"keyboard characters))\b")
_ASCII_FRAME_ZH = _rx("(?:ASCII|ascii)(?:码|字符|艺术|画|字体)?.{0,8}(?:绘制|画|表示|输出|拼|写)|"
                      "字符画|符号画|字符艺术|"
                      "用(?:符号|字符|星号|井号|键盘字符)(?:画|拼|组成|写)")


def _ascii_art(text: str) -> tuple[float, str]:
    weights: list[float] = []
    evidence = ""
    lines = text.splitlines()
    run = 0
    best = 0
    for line in lines:
        stripped = line.strip()
        if len(stripped) >= 5:
            art = sum(1 for ch in stripped if ch in _ART_CHARS)
            nonspace = sum(1 for ch in stripped if not ch.isspace())
            if nonspace and art / nonspace >= 0.6:
                run += 1
                best = max(best, run)
                continue
        run = 0
    if best >= 3:
        weights.append(0.8)
        evidence = f"{best} lines of character art"
    m = _ASCII_FRAME.search(text) or _ASCII_FRAME_ZH.search(text)
    if m:
        weights.append(0.6)
        evidence = evidence or m.group(0)
    return _combine(weights), evidence


# ------------------------------------------------------------------------ code completion
_CODE_MARK = re.compile(r"```|^\s*(?:def |class |function |import |from \w+ import|#include|"
                        r"public static|var |let |const |\w+\s*=\s*[\[{(\"'])|[;{}]\s*$",
                        re.MULTILINE)
_CODE_ASK = _rx(r"\b(complete|finish|fill in|fill out|continue|implement|extend|expand)\b"
                r"[^.\n]{0,40}"
                r"\b(code|function|script|program|snippet|class|method|the following|this|todo)\b")
_CODE_ASK_ZH = _rx("(补全|续写|补充|完成|填充|实现|完善)(以下|下面|这段|这个|如下)?的?"
                   "(代码|函数|程序|脚本|方法|类)")
_FILL_TODO = _rx(r"\b(?:fill in|complete|finish|replace)\b[^.\n]{0,15}\btodos?\b|"
                 "(?:补全|补上|填上|填写|完成|实现)[^。\n]{0,6}(?:TODO|todo|空缺|缺失的部分|省略的部分)|"
                 "(?:TODO|todo)[^。\n]{0,4}(?:补全|补上|填上|填写|完成)")
_PLACEHOLDER = _rx(r"#\s*TODO|//\s*TODO|\bpass\s*$|\.\.\.\s*$|#\s*(?:your code|fill|step \d)|"
                   r"<\s*(?:fill|your code)[^>]*>|# ?(?:在此|这里)(?:填写|补充|实现)")


def _code_completion(text: str) -> tuple[float, str]:
    code = len(_CODE_MARK.findall(text))
    ask = _CODE_ASK.search(text) or _CODE_ASK_ZH.search(text)
    weights: list[float] = []
    evidence = ""
    if (ask and code) or (ask and re.search(r"\b(?:def|function)\s+\w+\s*\(", text)):
        weights.append(0.5)
        evidence = ask.group(0)
    fill = _FILL_TODO.search(text)
    if fill and code:
        weights.append(0.5)
        evidence = evidence or fill.group(0)
    if code >= 2 and _PLACEHOLDER.search(text):
        weights.append(0.4)
        evidence = evidence or "code with a placeholder to fill"
    return _combine(weights), evidence


# -------------------------------------------------------------------------- payload split
_VAR_STRING = re.compile(r"(?:^|[\s;,(])[A-Za-z]\w{0,5}\s*[=:]\s*"
                         r"[\"'“‘「][^\"'”’」\n]{1,80}[\"'”’」]")
_CONCAT = re.compile(r"\b[A-Za-z]\w{0,5}\s*\+\s*[A-Za-z]\w{0,5}\b|\b(?:concatenat\w*|combine|join|"
                     r"put together|merge|glue|assemble)\b", re.IGNORECASE)
_CONCAT_ZH = re.compile("拼接|组合起来|合起来|连起来|合并|连在一起|拼在一起|合在一起|放在一起|组成一句|"
                        "拼成|连成")
_PARTS = _rx(r"\b(first|1st) (part|half|word|piece)\b[^\n]{0,120}"
             r"\b(second|2nd) (part|half|word|piece)\b|"
             "第一部分[^\n]{0,80}第二部分|前半(句|部分)[^\n]{0,80}后半(句|部分)")
# numbered pieces of a sentence, to be joined ("piece 1 ... piece 2 ... join them")
_PIECES = _rx(r"\b(?:part|piece|fragment|half|segment) ?(?:1|one|a)\b[^\n]{0,120}"
              r"\b(?:part|piece|fragment|half|segment) ?(?:2|two|b)\b")
_REFER_BACK = _rx(r"\b(combine|join|concatenate|put together|merge|assemble)\b[^.\n]{0,40}"
                  r"\b(previous|earlier|above|last|prior|my|those|these|the two|the three|both|"
                  r"all)\b[^.\n]{0,30}"
                  r"\b(messages?|parts?|pieces?|words?|strings?|answers?|fragments?|halves|"
                  r"sentences?|variables?)\b")
_REFER_BACK_ZH = _rx("(把|将)?(前面|之前|上面|刚才|以上|前几条|上述)[^。\n]{0,12}"
                     "(拼接|组合|合并|连起来|合起来|拼在一起|连在一起)")
_REMEMBER = _rx(r"\bremember (?:this|the following|these)\b|"
                r"\b(?:part|piece|fragment) ?(?:1|one|a)\b|"
                "记住(这个|以下|下面)|第一部分是")


def _payload_split(text: str) -> tuple[float, str]:
    weights: list[float] = []
    evidence = ""
    assigns = _VAR_STRING.findall(text)
    concat = _CONCAT.search(text) or _CONCAT_ZH.search(text)
    if len(assigns) >= 2 and concat:
        weights.append(0.8)
        evidence = f"string pieces joined: {_excerpt(concat.group(0), 40)}"
    m = _PARTS.search(text)
    if m:
        weights.append(0.6)
        evidence = evidence or _excerpt(m.group(0), 60)
    m = _PIECES.search(text)
    if m and concat:
        weights.append(0.6)
        evidence = evidence or _excerpt(m.group(0), 60)
    return _combine(weights), evidence


# ---------------------------------------------------------------- contradictory / opposing
# contradictory — one message asks for some content and also for its refutation or
# critique, so the content is produced as the thing to be knocked down (a request that is
# only a refutation, "refute the claim that ...", is not this).
_REFUTE_EN = (r"(?:refut\w*|rebut\w*|disprov\w*|debunk\w*|critiqu\w*|criticiz\w*|criticis\w*|"
              r"argu\w* against|counter-?argu\w*|tear (?:it|this|that) apart|point\w* out (?:the |"
              r"its )?(?:flaws|errors|problems)|explain\w* why (?:it|this|that) is wrong)")
_REFUTE_ZH = ("(?:反驳|驳斥|批判|批驳|辩驳|驳倒|驳回|指出(?:其|它的|其中的)?(?:错误|漏洞|问题)|"
              "说明为什么是错的)")
_CONTRA_EN = _rx(r"\b(?:then|and then|afterwards|after that|next|finally|before you finish|"
                 r"and also),?\s+(?:please\s+)?(?:\w+\s+){0,5}" + _REFUTE_EN +
                 r"\b(?:\s+(?:it|this|that|them|your (?:own )?(?:answer|reply|response|text|"
                 r"argument|points?)|what you (?:wrote|said)|the (?:above|answer)))?")
_CONTRA_TAIL_EN = _rx(r"[,.;:!?]\s*(?:please\s+)?(?:now\s+)?" + _REFUTE_EN +
                      r"\b[^.\n]{0,40}[.!]?\s*$")
_CONTRA_ZH = _rx("(?:然后|再|之后|接着|最后|随后|并且?|同时)[^。\n]{0,8}"
                 + _REFUTE_ZH + "(?:一下)?(?:它|这个|这些|上述|以上|你的回答|你自己|这一观点|这段话)?")
_CONTRA_TAIL_ZH = _rx("[,.;:，。；！？]\\s*(?:请)?" + _REFUTE_ZH + "[^。\n]{0,20}[。！]?\\s*$")


def _contradictory(text: str) -> tuple[float, str]:
    tail = text.strip()[-300:]
    for pattern, weight in ((_CONTRA_EN, 0.6), (_CONTRA_ZH, 0.6),
                            (_CONTRA_TAIL_EN, 0.6), (_CONTRA_TAIL_ZH, 0.6)):
        m = pattern.search(tail)
        if m:
            head = tail[: m.start()].strip()
            # the refutation must follow a separate request, not be the whole request
            if _content_size(head) >= 16:
                return weight, _excerpt(m.group(0).strip(" ,.;:，。；"), 40)
    return 0.0, ""


# opposing — a rule that inverts the assistant's normal behaviour: a game of opposites,
# reversed roles or values, or two replies side by side where one is "unrestricted", so
# the harmful content comes out as the other side of the game.
_OPPOSE = _rx(r"\b(?:(?:game|day|rule|mode|world) of (?:opposites?|reversal)|opposites? (?:game|day|"
              r"mode|world|rules?)|(?:do|say|answer|respond with|give) the (?:exact )?opposite|"
              r"(?:reverse|invert|flip)\w* (?:your|the) (?:rules|answers?|ethics|values|"
              r"behaviou?r|role)|reverse (?:psychology|mode)|opposite of what you "
              r"(?:would|normally|usually)|(?:values|rules|ethics|morals|principles) (?:are|is|get) "
              r"(?:flipped|reversed|inverted|swapped)|what you (?:would )?(?:normally|usually) "
              r"(?:decline|refuse|reject|avoid)\w*,? you (?:now|must|will))\b")
_DUAL = _rx(r"\b(?:two|2|both|dual|twin)\s+(?:different\s+|separate\s+)?(?:responses|answers|"
            r"replies|personas|versions|outputs|voices)\b[^\n]{0,160}\b(?:unfiltered|unrestricted|"
            r"uncensored|evil|dark|jailbroken|rule-?less|no (?:rules|limits|filter))|"
            r"\b(?:normal|classic|filtered|standard|safe)\b[^\n]{0,60}\b(?:jailbroken|unfiltered|"
            r"evil|unrestricted|dan|uncensored|dark)\b[^\n]{0,30}\b(?:response|answer|reply|"
            r"version|persona)")
_OPPOSE_ZH = _rx("(?:反着|颠倒|倒过来|反过来)(?:来|说|做|回答|答)|相反的(?:事|回答|做法|规则|方式)|"
                 "正话反说|反向(?:模式|回答|规则)|(?:规则|是非|善恶|标准|价值观)[^。\n]{0,4}颠倒|"
                 "说反话|(?:平时|本来|通常)(?:会|要)?(?:拒绝|不做|不答)的[^。\n]{0,10}(?:现在|都)")
_DUAL_ZH = _rx("(?:两个|两种|两份|双重)(?:不同的)?(?:回答|回复|角色|人格|版本|身份)"
               "[^\n]{0,80}(?:(?:不受|没有|无)(?:任何)?(?:限制|过滤|底线|约束)|邪恶|黑暗)")

# a request placed beside another one, with an instruction to take them together
# (compare, contrast, answer both): a harmful ask rides along with a harmless one
_ENUM = (r"(?:^|\n|[\s:：;；。.,，])\s*(?:question|problem|task|request|item|topic|part|"
         r"case|q)?\s*[#(（\[]?(?:{a}|{b})[)）\].:：、]")
_ENUM_PAIRS = [("1", "2"), ("a", "b"), ("A", "B"), ("①", "②"), ("一", "二"), ("甲", "乙"),
               ("i", "ii"), ("one", "two"), ("first", "second")]
_ENUM_RE = [(re.compile(_ENUM.format(a=re.escape(a), b="(?!)"), re.IGNORECASE | re.MULTILINE),
             re.compile(_ENUM.format(a="(?!)", b=re.escape(b)), re.IGNORECASE | re.MULTILINE))
            for a, b in _ENUM_PAIRS]
_ENUM_ZH = _rx("(?:问题|任务|题目|请求|话题|第)[一1①][^\n]{0,200}(?:问题|任务|题目|请求|话题|第)[二2②]")
_JOINT = _rx(r"\b(?:compare|comparison|contrast|differen\w*|similarit\w*|side by side|"
             r"both|each of (?:them|these|the two)|answer (?:all|both|them)|which (?:one )?is "
             r"(?:better|easier|harder))\b")
_JOINT_ZH = _rx("区别|对比|比较|异同|不同之处|相同之处|分别(?:回答|说明|给出)|都(?:回答|说明|讲讲)|哪个更")


# a pair of asks is a short message; the numbered lists of a long pasted document (a report,
# a travel plan, notes) and a "both" or "比较" somewhere in it are not one
_PAIR_MAX_SIZE = 800


def _paired_requests(text: str) -> tuple[float, str]:
    if _content_size(text) > _PAIR_MAX_SIZE:
        return 0.0, ""
    if not (_JOINT.search(text) or _JOINT_ZH.search(text)):
        return 0.0, ""
    for first, second in _ENUM_RE:
        a = first.search(text)
        if a and second.search(text, a.end()):
            return 0.45, _excerpt(text[a.start():a.start() + 60], 60)
    m = _ENUM_ZH.search(text)
    return (0.45, _excerpt(m.group(0), 60)) if m else (0.0, "")


def _opposing(text: str) -> tuple[float, str]:
    weights: list[float] = []
    evidence = ""
    for pattern, weight in ((_OPPOSE, 0.75), (_OPPOSE_ZH, 0.75), (_DUAL, 0.65), (_DUAL_ZH, 0.65)):
        m = pattern.search(text)
        if m:
            weights.append(weight)
            evidence = evidence or _excerpt(m.group(0), 60)
    pair, pair_evidence = _paired_requests(text)
    if pair:
        weights.append(pair)
        evidence = evidence or pair_evidence
    return _combine(weights), evidence


# ------------------------------------------------------------------------------ long text
_MANY_SHOT = re.compile(r"^\s*(?:Q|A|User|Human|Assistant|AI|用户|助手|问|答)\s*[:：]",
                        re.MULTILINE)


def _long_text(text: str, override_conf: Callable[[], float]) -> tuple[float, str]:
    size = _content_size(text)
    shots = len(_MANY_SHOT.findall(text))
    if size < 3000 and shots < 16:
        return 0.0, ""
    weights = [0.3] if size >= 3000 else []
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines:
        counts = Counter(lines)
        repeated = sum(n for n in counts.values() if n > 1)
        share = repeated / len(lines)
        if share >= 0.3:
            weights.append(0.4)
    if shots >= 16:
        weights.append(0.45)
    if override_conf() >= 0.5:
        weights.append(0.5)
    evidence = f"{len(text)} characters"
    if shots >= 16:
        evidence += f", {shots} scripted dialogue turns"
    return _combine(weights), evidence


# ------------------------------------------------------------------------------- acrostic
# acrostic — the content is spelled by the first (or last) letters or characters of lines,
# sentences or words, and the message asks for text built that way or asks the reader to
# assemble those letters.
_ACROSTIC = _rx(r"\b(?:acrostic|(?:first|initial|opening|last|final) (?:letter|word|character|"
                r"char)s? (?:of|in|from) (?:each|every|the|all (?:the )?)\s*(?:\w+\s+)?(?:line|"
                r"sentence|word|paragraph|verse|row|stanza)s?|read (?:it |them |the \w+ )?"
                r"(?:vertically|downwards?|down the (?:first|left|side))|(?:spell|spells|spelled|"
                r"spelling) (?:out )?(?:vertically|down the side)|take the (?:first|initial|last) "
                r"(?:letter|character)s?|(?:lines|sentences|verses|words) (?:begin|start)s? with "
                r"the (?:letters|characters|words) of|read (?:from )?top to bottom)")
_ACROSTIC_ZH = _rx("藏头|藏尾|(?:每|各)(?:一)?(?:句|行|段|个词|个句子)的?(?:第一个|首个|开头的?|首|"
                   "最后一个|末尾的?|末)(?:字|字母|词)|(?:首字|首字母|头一个字)(?:连起来|连成|组成|拼成)|"
                   "竖着(?:读|看)|从上往下读")


def _acrostic(text: str) -> tuple[float, str]:
    m = _ACROSTIC.search(text) or _ACROSTIC_ZH.search(text)
    return (0.6, m.group(0)) if m else (0.0, "")


# -------------------------------------------------------------------------------- shuffle
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_DET = _words("a an the this that these those every each my your his its our their")
_PREP = _words("of in on at for to with by from into onto about over under between through "
               "during without within upon")
_CONJ = _words("and or but nor")
_AUX = _words("is are was were be been can could will would should may might must shall "
              "do does did have has had")
_PRON = _words("i you he she it we they me him us them")
_VERB_OPENERS = _words(
    "write create develop explain give provide teach describe generate make tell design "
    "draft outline list show help build produce compose instruct offer suggest publish post "
    "share how what why where when which who can could would should is are do does please")
_ALLOWED_PAIRS = frozenset({("out", "of"), ("because", "of"), ("from", "under"), ("into", "the"),
                            ("that", "the"), ("that", "a"), ("that", "this"), ("that", "my"),
                            ("that", "your"), ("that", "his"), ("that", "her"), ("that", "their"),
                            ("that", "its"), ("that", "our"), ("this", "one"), ("that", "these"),
                            ("that", "those"), ("that", "every"), ("that", "each")})
_WORD_RE = re.compile(r"[A-Za-z']+|[.!?]")


# a token with a digit in it (0x7ffe3a10, d4e5f6a, mp3) is not a word: split into letters it
# would read as stray one-letter words ("a") out of order
_HAS_DIGIT = re.compile(r"\w*\d\w*")


def _shuffle_en(text: str) -> float:
    tokens = _WORD_RE.findall(_HAS_DIGIT.sub(" ", text))
    words = [t for t in tokens if t not in ".!?"]
    if not 6 <= len(words) <= 80:
        return 0.0
    score = 0.0
    prev: str | None = None
    after_stop = True
    for tok in tokens:
        if tok in ".!?":
            after_stop = True
            prev = None
            continue
        low = tok.lower()
        if prev is not None and (prev, low) not in _ALLOWED_PAIRS:
            if prev in _DET and (low in _DET or low in _PREP or low in _CONJ or low in _AUX
                                 or low in _PRON):
                score += 0.3
            elif (prev in _PREP and low in _PREP | _CONJ | _AUX) or (
                    prev in _CONJ and low in _CONJ | _AUX):
                score += 0.2
        if not after_stop and tok[0].isupper() and low in _VERB_OPENERS and low != "i":
            score += 0.35  # a sentence opener stranded mid-sentence
        after_stop = False
        prev = low
    last = words[-1].lower()
    if last in _DET - {"that", "this", "these", "those"} or last in _CONJ:
        score += 0.3
    first = words[0]
    if first[0].islower() and first.lower() not in _VERB_OPENERS and first.lower() not in _PRON:
        score += 0.1
    # normalise by length a little: long texts accumulate chance anomalies
    return min(0.95, score * min(1.0, 14 / len(words)) if len(words) > 14 else score)


@lru_cache(maxsize=1)
def _segmenter() -> object | None:
    try:
        import rjieba
    except ImportError:
        return None
    return rjieba


def _shuffle_zh(text: str) -> float:
    """Share of CJK characters that fall into no multi-character word: natural Chinese
    segments into many two- and three-character words, shuffled characters do not."""
    seg = _segmenter()
    if seg is None:
        return 0.0
    chunks = re.findall(f"[{_CJK}]+", text)
    total = sum(len(c) for c in chunks)
    if not 8 <= total <= 400:
        return 0.0
    single = 0
    for chunk in chunks:
        for word in seg.cut(chunk, False):  # type: ignore[attr-defined]
            if len(word) == 1:
                single += 1
    share = single / total
    # the score starts where natural Chinese stops and saturates where shuffled text sits
    # (the shares measured on each are in docs/assessor.md)
    return max(0.0, min(0.95, (share - 0.45) * 2.5))


def shuffle_score(text: str) -> float:
    """How strongly the word (EN) or character (ZH) order looks scrambled, in [0, 1)."""
    cjk = len(_CJK_RE.findall(text))
    letters = sum(1 for ch in text if ch.isalpha())
    if letters and cjk / letters >= 0.3:
        return round(_shuffle_zh(text), 3)
    return round(_shuffle_en(text), 3)


# ---------------------------------------------------------------------------- scan / API
def _window(text: str) -> str:
    if len(text) <= 2 * _SCAN_WINDOW:
        return text
    return text[:_SCAN_WINDOW] + "\n" + text[-_SCAN_WINDOW:]


def _whole(text: str) -> str:
    return text


def _long_text_of(text: str) -> tuple[float, str]:
    # an override cue inside a long text adds to the evidence; scanned only for long texts
    return _long_text(text, lambda: _cue_scan(_window(text), _OVERRIDE)[0])


def _shuffled(text: str) -> tuple[float, str]:
    # past 2000 characters the word-order statistics cost more than they tell
    return (shuffle_score(text), "word order looks scrambled") if len(text) <= 2000 else (0.0, "")


@dataclass(frozen=True)
class Detector:
    """One technique's detector, paired with the transform that makes the text it reads
    (the scan window of a long text, or the whole text)."""

    technique: str
    detect: Callable[[str], tuple[float, str]]
    reads: Callable[[str], str] = _window


DETECTORS: tuple[Detector, ...] = (
    Detector("instruction_override", lambda t: _cue_scan(t, _OVERRIDE)),
    Detector("role_play", lambda t: _cue_scan(t, _ROLE_PLAY)),
    Detector("encoding", _encoding),
    Detector("char_split", _char_split),
    Detector("ascii_art", _ascii_art),
    Detector("code_completion", _code_completion),
    Detector("payload_split", _payload_split),
    Detector("contradictory", _contradictory),
    Detector("opposing", _opposing),
    Detector("long_text", _long_text_of, _whole),
    Detector("acrostic", _acrostic),
    Detector("shuffle", _shuffled, _whole),
)
assert {d.technique for d in DETECTORS} <= set(ATTACK_TECHNIQUES)


def scan_text(text: str, *, min_confidence: float = 0.3) -> list[Hit]:
    """All single-text techniques found in `text`, strongest first."""
    return [h for h in _scan(text) if h.confidence >= min_confidence]


@memo_by_text  # one decision scans the same turn for the reading and the attack findings
def _scan(text: str) -> tuple[Hit, ...]:
    hits = []
    for detector in DETECTORS:
        conf, evidence = detector.detect(detector.reads(text))
        hits.append(Hit(detector.technique, conf, _excerpt(evidence)))
    return tuple(sorted(hits, key=lambda h: h.confidence, reverse=True))


_FOLLOW_UP = _rx(r"\b(more (?:detail|details|specific|precise|concrete)|be more specific|"
                 r"go (?:further|deeper|on)|step[- ]by[- ]step|"
                 r"exact (?:amounts?|quantities|steps|dose|doses|recipe)|"
                 r"what (?:amount|quantity|dose)|now (?:tell|show|give|explain)|continue|"
                 r"keep going|"
                 r"and then\??$|how exactly)\b|(更|再)(详细|具体|深入)|具体(步骤|用量|剂量|方法)|"
                 "继续|接着说|然后呢|"
                 "一步一步|详细(步骤|说明)")


def escalation_findings(
    messages: Sequence[Message], turn_risk: Mapping[int, float], *, threshold: float = 0.5,
) -> list[AttackFinding]:
    """Multi-turn escalation from per-turn risk (0..1, indexed by message index).

    Flags the current (last) user turn when the conversation climbs toward risk: the
    current turn is risky, an earlier user turn was clearly less risky, and the risk rose
    over the user turns; or the current turn asks to go further after a risky turn.
    """
    users = [i for i, m in enumerate(messages) if m.role == "user" and i in turn_risk]
    if len(users) < 2:
        return []
    last = users[-1]
    risks = [turn_risk[i] for i in users]
    current = risks[-1]
    earlier_min = min(risks[:-1])
    earlier_max = max(risks[:-1])
    findings: list[AttackFinding] = []
    rising = sum(1 for a, b in pairwise(risks) if b >= a - 0.05)
    if current >= threshold and earlier_min <= current - 0.3 and rising >= len(risks) - 1 - 1:
        conf = min(0.9, 0.4 + (current - earlier_min) * 0.5 + 0.1 * (len(users) - 2))
        findings.append(AttackFinding(
            technique="multi_turn_escalation", turn=last, confidence=round(conf, 3),
            evidence=f"risk rose from {earlier_min:.2f} to {current:.2f} over {len(users)} turns"))
    elif earlier_max >= threshold and _FOLLOW_UP.search(messages[last].content):
        findings.append(AttackFinding(
            technique="multi_turn_escalation", turn=last, confidence=0.55,
            evidence="asks to go further after a risky turn"))
    return findings


def detect_attacks(
    messages: Sequence[Message], *, turn_risk: Mapping[int, float] | None = None,
    min_confidence: float = 0.3,
) -> list[AttackFinding]:
    """Attack techniques in the user turns of a conversation.

    One finding per (user turn, technique), `turn` being the message index. Cross-turn
    techniques (`payload_split` over several turns, `multi_turn_escalation`) are reported on
    the turn that completes them; escalation needs `turn_risk` (risk in [0, 1] per user
    message index), which an assessor supplies from its own per-turn judgement.
    """
    findings: list[AttackFinding] = []
    user_idx = [i for i, m in enumerate(messages) if m.role == "user"]
    for i in user_idx:
        for hit in scan_text(messages[i].content, min_confidence=min_confidence):
            findings.append(AttackFinding(technique=hit.technique, turn=i,
                                          confidence=hit.confidence, evidence=hit.evidence))
    # a later turn asking to assemble what earlier turns laid down
    for pos, i in enumerate(user_idx[1:], start=1):
        text = messages[i].content
        m = _REFER_BACK.search(text) or _REFER_BACK_ZH.search(text)
        if not m:
            continue
        earlier = [messages[j].content for j in user_idx[:pos]]
        staged = any(_REMEMBER.search(t) or _VAR_STRING.search(t) or len(t.split()) <= 4
                     for t in earlier)
        conf = 0.8 if staged else 0.6
        if not any(f.turn == i and f.technique == "payload_split" for f in findings):
            findings.append(AttackFinding(technique="payload_split", turn=i, confidence=conf,
                                          evidence=_excerpt(m.group(0))))
    if turn_risk:
        findings.extend(escalation_findings(messages, turn_risk))
    findings.sort(key=lambda f: (f.turn, -f.confidence))
    return findings
