"""Shared fixtures. `SHARED` is the read-only ../shared folder beside the checkout
(`$OYSTER_SHARED` points elsewhere, e.g. from a second worktree)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OYSTER_SHARED") or ROOT.parent / "shared")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.fail(f"{SHARED} is missing: the shared material must sit beside the checkout")
    return SHARED


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def policy():
    from oyster.taxonomy.policy import default_policy

    return default_policy()
