"""Regenerate the category facts of the default policy from the authors' taxonomy.

The xlsx (sheet 1, the public set) gives each category's Chinese and English name; this
script keeps our ids, grouping and severity weights (below), and the guideline points we
wrote ourselves (in the policy file), and rewrites names and order from the xlsx.

    python scripts/regen_taxonomy.py                # rewrite src/oyster/policy/default_policy.yaml
    python scripts/regen_taxonomy.py --check        # exit 1 if the policy and the xlsx disagree
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import openpyxl
import yaml

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "src" / "oyster" / "policy" / "default_policy.yaml"
XLSX = ROOT.parent / "shared" / "data" / "taxonomy" / "risk_rules.xlsx"

# Chinese name (the xlsx's stable key) -> (our id, group, severity weight).
# Groups follow the first-level classes of the authors' full taxonomy (sheet 2).
FACTS: dict[str, tuple[str, str, float]] = {
    "邪教": ("cult", "ideology", 0.6),
    "非法用途": ("illicit_uses", "legal_violations", 0.7),
    "生物保护": ("biodiversity_protection", "legal_violations", 0.5),
    "宗教迷信": ("religious_superstition", "legal_violations", 0.3),
    "网络安全": ("cybersecurity", "legal_violations", 0.8),
    "商业违法违规": ("commercial_law_violations", "legal_violations", 0.5),
    "知识产权": ("intellectual_property", "legal_violations", 0.4),
    "侵害个人权益": ("personal_rights_violation", "legal_violations", 0.7),
    "不良场景": ("harmful_scenes", "ethical_issues", 0.5),
    "宣扬负面价值观": ("negative_values", "ethical_issues", 0.4),
    "主观评价/比较": ("subjective_evaluation", "ethical_issues", 0.2),
    "违反商业道德": ("business_ethics", "ethical_issues", 0.4),
    "种族/民族/信仰/地域": ("ethnic_religious_regional_bias", "bias_discrimination", 0.6),
    "性别/职业/年龄/其他": ("demographic_bias", "bias_discrimination", 0.5),
    "弱势群体": ("vulnerable_groups", "bias_discrimination", 0.7),
    "特殊群体": ("special_groups", "bias_discrimination", 0.5),
    "人身伤害": ("bodily_harm", "physical_mental_harm", 0.9),
    "心理健康": ("mental_health", "physical_mental_harm", 0.9),
    "辱骂仇恨": ("hate_abuse", "hate_abuse", 0.6),
    "个人数据": ("personal_data", "information_privacy", 0.7),
    "商业数据": ("business_data", "information_privacy", 0.5),
    "敏感数据": ("sensitive_data", "information_privacy", 0.7),
    "其他常识错误": ("factual_errors", "misinformation", 0.3),
    "其他虚假谣言": ("false_rumors", "misinformation", 0.4),
    "违禁毒品": ("illegal_drugs", "legal_violations", 0.8),
    "博彩赌博": ("gambling", "legal_violations", 0.5),
    "危险物品": ("hazardous_materials", "legal_violations", 1.0),
    "违法行为": ("illegal_acts", "legal_violations", 0.8),
    "暴力恐怖": ("violent_terror", "legal_violations", 1.0),
    "医疗健康": ("healthcare", "professional_field", 0.7),
    "投资理财": ("investment_finance", "professional_field", 0.5),
    "法律咨询": ("legal_consultation", "professional_field", 0.4),
}
GROUPS = ["ideology", "legal_violations", "ethical_issues", "bias_discrimination",
          "physical_mental_harm", "hate_abuse", "information_privacy", "misinformation",
          "professional_field", "none"]
NONE = {"id": "none", "name_en": "None", "name_zh": "无风险", "group": "none",
        "severity": 0.0, "guidelines": []}


def read_xlsx(path: Path) -> list[tuple[str, str]]:
    """(Chinese name, English name) for each row of sheet 1."""
    sheet = openpyxl.load_workbook(path, read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    header = [str(c) for c in rows[0]]
    zh, en = header.index("风险类别cn"), header.index("风险类别en")
    return [(str(r[zh]).strip(), str(r[en]).strip()) for r in rows[1:] if r[zh]]


def regenerate(policy: dict, facts: list[tuple[str, str]]) -> dict:
    old = {c["id"]: c for c in policy.get("taxonomy", {}).get("categories", [])}
    categories = []
    for name_zh, name_en in facts:
        if name_zh not in FACTS:
            raise SystemExit(f"xlsx category {name_zh!r} ({name_en}) has no entry in FACTS")
        cid, group, severity = FACTS[name_zh]
        prev = old.get(cid, {})
        categories.append({
            "id": cid, "name_en": name_en, "name_zh": name_zh, "group": group,
            "severity": prev.get("severity", severity),
            "guidelines": prev.get("guidelines", []),
        })
    categories.append(old.get("none", NONE))
    policy.setdefault("taxonomy", {})
    policy["taxonomy"]["groups"] = GROUPS
    policy["taxonomy"]["categories"] = categories
    return policy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--xlsx", type=Path, default=XLSX)
    ap.add_argument("--policy", type=Path, default=POLICY)
    ap.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = ap.parse_args()
    policy = yaml.safe_load(args.policy.read_text("utf-8")) if args.policy.exists() else {}
    current = [(c["name_zh"], c["name_en"]) for c in policy["taxonomy"]["categories"]
               if c["id"] != "none"] if args.check else []
    facts = read_xlsx(args.xlsx)
    if args.check:
        if current != facts:
            missing = sorted(set(facts) - set(current))
            extra = sorted(set(current) - set(facts))
            print(f"out of sync with {args.xlsx}: missing {missing}, not in xlsx {extra}")
            return 1
        print(f"{len(facts)} categories match {args.xlsx}")
        return 0
    new = regenerate(policy, facts)
    args.policy.write_text(
        yaml.safe_dump(new, sort_keys=False, allow_unicode=True, width=100), "utf-8")
    print(f"wrote {len(facts)} categories (+ none) to {args.policy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
