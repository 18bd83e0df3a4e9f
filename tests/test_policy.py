import subprocess
import sys

import pytest
import yaml

from oyster.errors import PolicyError
from oyster.policy import DEFAULT_POLICY_FILE, load_policy
from oyster.types import STRATEGIES, USER_TYPES


def test_default_policy_has_the_32_categories_plus_none(policy):
    ids = policy.category_ids()
    assert len(ids) == 33 and "none" in ids
    for c in policy.taxonomy.categories:
        assert c.name_en and c.name_zh
        if c.id != "none":
            assert c.guidelines, c.id
            assert 0 < c.severity <= 1
    assert set(policy.user_types) == set(USER_TYPES)
    assert set(policy.strategies) == set(STRATEGIES)
    assert policy.label.startswith("default@")


def test_category_lookup_by_id_or_english_name(policy):
    assert policy.category("mental_health").name_en == "Mental Health"
    assert policy.category("Mental Health").id == "mental_health"
    assert not policy.has_category("no_such_thing")


def test_taxonomy_matches_the_authors_xlsx(shared_dir, repo_root):
    out = subprocess.run(
        [sys.executable, str(repo_root / "scripts" / "regen_taxonomy.py"), "--check",
         "--xlsx", str(shared_dir / "data" / "taxonomy" / "risk_rules.xlsx")],
        capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _write(tmp_path, data, name="p.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, allow_unicode=True) if not isinstance(data, str) else data)
    return p


def _default_mapping():
    from importlib import resources

    return yaml.safe_load(
        resources.files("oyster.policy").joinpath(DEFAULT_POLICY_FILE).read_text("utf-8"))


def test_broken_policy_names_file_field_and_reason(tmp_path):
    data = _default_mapping()
    data["game"]["beta"] = -1
    path = _write(tmp_path, data)
    with pytest.raises(PolicyError) as e:
        load_policy(path)
    msg = str(e.value)
    assert str(path) in msg and "game.beta" in msg and "greater than or equal" in msg


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d["game"]["prior"].pop("malicious"), "prior"),
    (lambda d: d["game"]["behaviour"]["fit"]["benign"].update(hug=1.0), "fit"),
    (lambda d: d["taxonomy"]["categories"].append(dict(d["taxonomy"]["categories"][0])),
     "duplicate category ids"),
    (lambda d: d["taxonomy"]["categories"][0].update(group="nowhere"), "not declared"),
    (lambda d: d["strategies"].pop("guide"), "strategies"),
    (lambda d: d.update(surprise=1), "surprise"),
])
def test_invalid_policies_are_rejected(tmp_path, mutate, fragment):
    data = _default_mapping()
    mutate(data)
    with pytest.raises(PolicyError, match=fragment):
        load_policy(_write(tmp_path, data))


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(_write(tmp_path, "a: [unclosed"))
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError, match="mapping"):
        load_policy(_write(tmp_path, "- just\n- a list\n"))


def test_partial_policy_on_top_of_default(tmp_path):
    path = _write(tmp_path, {"base": "default", "name": "clinic",
                             "game": {"beta": 5.0, "prior": {"vulnerable": 0.4}}})
    p = load_policy(path)
    assert p.name == "clinic" and p.game.beta == 5.0
    assert p.game.prior["vulnerable"] == 0.4 and p.game.prior["benign"] == 0.7
    assert len(p.taxonomy.categories) == 33


def test_table_behaviour_must_sum_to_one(tmp_path):
    data = {"base": "default", "game": {"behaviour": {"kind": "table"}}}
    with pytest.raises(PolicyError, match="needs a 'table'"):
        load_policy(_write(tmp_path, data))
    row = {"satisfied": 0.5, "follows_guidance": 0.5, "retries": 0.5, "escalates": 0.0,
           "leaves_for_unsafe_source": 0.0}
    table = {t: {a: row for a in STRATEGIES} for t in USER_TYPES}
    data["game"]["behaviour"]["table"] = table
    with pytest.raises(PolicyError, match="sum to 1"):
        load_policy(_write(tmp_path, data))


def test_the_old_name_oyster_taxonomy_still_imports_with_a_warning():
    import importlib

    import oyster.policy
    import oyster.policy.cli
    import oyster.policy.policy
    import oyster.policy.replies

    for name in [m for m in sys.modules if m.startswith("oyster.taxonomy")]:
        del sys.modules[name]
    with pytest.warns(DeprecationWarning, match="oyster.policy"):
        old = importlib.import_module("oyster.taxonomy.policy")
    assert old is oyster.policy.policy and old.Policy is oyster.policy.Policy
    assert importlib.import_module("oyster.taxonomy.replies") is oyster.policy.replies
    assert importlib.import_module("oyster.taxonomy.cli") is oyster.policy.cli
    assert importlib.import_module("oyster.taxonomy").load_policy is oyster.policy.load_policy
    # nothing of oyster itself goes through the old name (no warning for users)
    loaded = subprocess.run([sys.executable, "-c", "import sys, oyster.cli; print(sorted(m for m "
                             "in sys.modules if m.startswith('oyster.taxonomy')))"],
                            capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
