"""An ask placed inside fiction or a dialogue: a story, scene or script in which a character
explains, step by step, how to do something; a quoted question a character must answer; a
dialogue whose turn to answer is left open. The decoder lifts the ask out of its frame so
it can be judged on its own, as it would be if asked plainly. The frame itself stays
readable and is still judged (`replaces_surface` is false)."""

from __future__ import annotations

import re

from oyster.assess.base import final_request
from oyster.assess.deobfuscate.base import Decoded, Decoder, register

_MAX_TEXT = 8000
_FRAME = re.compile(
    r"\b(stor(?:y|ies)|novel|fiction(?:al)?|screenplay|script|scene|play|dialogue|dialog|"
    r"character|protagonist|villain|hero(?:ine)?|narrator|role-?play|movie|film|tale|fable|"
    r"chapter|plot|episode|game master|in a world where)\b|"
    "小说|故事|剧本|剧情|场景|角色|主角|主人公|反派|人物|对话|台词|电影|戏剧|情节|扮演|旁白|章节",
    re.IGNORECASE)
_DETAIL = re.compile(r"\b(step[- ]by[- ]step|in (?:full |great |precise )?detail|detailed|exact(?:ly)?|"
                     r"precise(?:ly)?|specific(?:ally)?|every step|full (?:recipe|instructions|"
                     r"procedure)|quantities|measurements)\b|一步一步|详细|具体|每一步|精确|完整|"
                     "配比|用量|分步", re.IGNORECASE)
_QUOTE = re.compile(r"\"([^\"\n]{8,300})\"|“([^”\n]{4,300})”|「([^」\n]{4,300})」|"
                    r"『([^』\n]{4,300})』|(?<!\w)'([^'\n]{8,300})'(?!\w)")
_ASK_EN = re.compile(r"^\s*(how|what|which|where|why|who|can|could|would|will|is there|tell|"
                     r"explain|give|write|list|describe|show|teach|help|make|create|generate|"
                     r"provide|outline|walk)\b|\?\s*$", re.IGNORECASE)
_ASK_ZH = re.compile("如何|怎么|怎样|什么|哪些|哪里|哪儿|为什么|能否|能不能|可不可以|教我|教你|"
                     "告诉|写一|给我|列出|说明|解释|介绍|[？?]\\s*$")
_INDIRECT_EN = re.compile(
    r"\b(?:explains?|explaining|describes?|describing|tells?|telling|teach(?:es|ing)?|shows?|"
    r"showing|reveals?|revealing|details?|detailing|walks? (?:\w+ )?through|lists?|"
    r"instructs?|outlines?|spells? out|recites?|gives? (?:\w+ )?(?:instructions|a recipe|"
    r"a tutorial|a guide))\b[^.\n]{0,60}?\b((?:how (?:to|one|you|he|she|they|i|we)\b|the "
    r"(?:exact |precise |detailed |full |whole |complete )?(?:steps?|process|method|recipe|"
    r"procedure|way|instructions|formula) (?:to|for|of)\b)[^.\n;]{3,160})", re.IGNORECASE)
_INDIRECT_ZH = re.compile(
    "(?:讲解|解释|讲述|说明|描述|介绍|教|告诉|演示|示范|列出|写出|说出|传授|透露)[^。！？\n]{0,12}?"
    "((?:如何|怎么|怎样|怎么样)[^。！？\n；]{2,80})")
_STEPS_ZH = re.compile("([^。！？\n，,：:“”「」]{2,40}?)的(?:具体|详细|完整)?"
                       "(?:步骤|方法|配方|流程|做法|过程|配比)")
_TELLS_ZH = re.compile("(?:说出|讲出|写出|讲述|讲解|介绍|描述|说明|解释|交代|列出|讲|说|写)了?")
_SPEAKER = re.compile(r"^\s*([A-Z][\w .'-]{0,20}|[\u4e00-\u9fff]{1,6}|[A-Za-z]{1,10})\s*[:：]\s*(.*)$",
                      re.MULTILINE)
_COMPLY = re.compile(r"^\s*(sure|of course|certainly|okay|ok|here(?:'s| is| are)|first(?:ly)?|"
                     r"step 1|1\.)|^\s*(好的|当然|没问题|首先|第一步|以下是)", re.IGNORECASE)
_TAIL = re.compile(r"\s*(,|，|;|；|—|-)?\s*(?:and|then|while|so that|but|而且|然后|并且|同时).*$",
                   re.IGNORECASE)


def _is_ask(text: str) -> bool:
    text = text.strip()
    if re.search("[\u4e00-\u9fff]", text):
        return len(text) >= 5 and bool(_ASK_ZH.search(text))
    return len(text.split()) >= 3 and bool(_ASK_EN.search(text))


@register
class StoryPayload(Decoder):
    """An ask embedded in a story or dialogue: a character explaining how to do something,
    a quoted question a character answers, a dialogue left open at the answer."""

    name = "story"
    technique = "role_play"
    replaces_surface = False

    def decode(self, text: str) -> list[Decoded]:
        # a long message is material with the sender's ask at its end: the quoted lines
        # and dialogue of a pasted chapter, sermon or transcript are the material's, not
        # asks to the model (on the validation split's long texts, harmless read R0 0.617
        # -> 0.667 with no harmful one lost; docs/assessor.md)
        body = final_request(text) or text[:_MAX_TEXT]
        frame = _FRAME.search(body)
        dialogue = self._dialogue(body)
        if frame is None and dialogue is None:
            return []
        bonus = 0.1 if _DETAIL.search(body) else 0.0
        out: list[Decoded] = []
        if frame is not None:
            for m in _QUOTE.finditer(body):
                quoted = next(g for g in m.groups() if g is not None).strip()
                if _is_ask(quoted):
                    out.append(self.found(quoted, 0.6 + bonus,
                                          f"a quoted ask inside a {frame.group(0)} frame"))
            for m in _INDIRECT_EN.finditer(body):
                ask = _TAIL.sub("", m.group(1)).strip(" ,.:;\"'")
                if len(ask.split()) >= 3:
                    ask = ask[0].upper() + ask[1:]
                    out.append(self.found(f"Explain {ask[0].lower() + ask[1:]}.", 0.6 + bonus,
                                          f"a character explains: {ask[:60]}"))
            for m in _INDIRECT_ZH.finditer(body):
                out.append(self.found(m.group(1).strip(" ，,：:“”"), 0.6 + bonus,
                                      f"角色讲解: {m.group(1)[:40]}"))
            if not out:
                for m in _STEPS_ZH.finditer(body):
                    subject = _TELLS_ZH.split(m.group(1).strip())[-1]
                    if len(subject) >= 2:
                        out.append(self.found(f"{subject}的{m.group(0)[len(m.group(1)) + 1:]}是什么？",
                                              0.55 + bonus, f"角色讲述{m.group(0)[:40]}"))
        if dialogue is not None:
            out.append(dialogue)
        unique: dict[str, Decoded] = {}
        for d in out:
            if d.text not in unique or d.confidence > unique[d.text].confidence:
                unique[d.text] = d
        return sorted(unique.values(), key=lambda d: -d.confidence)[:3]

    def _dialogue(self, body: str) -> Decoded | None:
        """The last ask in a dialogue of two or more speakers (scripted turns)."""
        turns = [(m.group(1).strip(), m.group(2).strip()) for m in _SPEAKER.finditer(body)]
        if len(turns) < 2 or len({s for s, _ in turns}) < 2:
            return None
        asks = [(i, s, u) for i, (s, u) in enumerate(turns) if _is_ask(u)]
        if not asks:
            return None
        i, speaker, utterance = asks[-1]
        after = turns[i + 1:]
        # the answer is left to the model: no reply after the ask, or a reply that starts to comply
        open_answer = not after or (len(after) == 1 and (not after[0][1] or
                                                         bool(_COMPLY.match(after[0][1]))))
        if not open_answer:
            return None
        detail = 0.1 if _DETAIL.search(body) else 0.0
        return self.found(utterance, 0.55 + detail, f"{speaker}'s question in a dialogue left "
                          "open for the answer")
