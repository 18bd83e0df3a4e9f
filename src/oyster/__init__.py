"""Oyster: Constructive Safety Alignment for LLM applications.

    from oyster import Engine
    decision = Engine().decide("how do I kill a stuck process?")
"""

from importlib.metadata import PackageNotFoundError, version

from oyster.decision import Decision
from oyster.engine import Engine
from oyster.errors import (
    AssessorError,
    BackendError,
    BackendTimeout,
    InputError,
    JudgeError,
    OysterError,
    PolicyError,
)
from oyster.taxonomy.policy import Policy, default_policy, load_policy

__all__ = [
    "AssessorError",
    "BackendError",
    "BackendTimeout",
    "Decision",
    "Engine",
    "InputError",
    "JudgeError",
    "OysterError",
    "Policy",
    "PolicyError",
    "default_policy",
    "load_policy",
]

try:  # the one version source is pyproject.toml; an installed package carries it
    __version__ = version("oyster-csa")
except PackageNotFoundError:  # sources on the path without an install
    __version__ = "0+unknown"
