"""The data files shipped inside the package (YAML, JSON, JSON Lines), read one way.

A packaged file that does not parse or validate is a defect of the package or of a local edit
to it; the error names the file and the first field at fault, and is of the family the caller
passes (`PolicyError` by default, `JudgeError` for the judges' files...).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from oyster.errors import OysterError, PolicyError, field_problem

M = TypeVar("M", bound=BaseModel)


def packaged_text(package: str, name: str) -> str:
    """The text of `name` (a path with '/' inside `package`, e.g. "data/anchors.yaml")."""
    return resources.files(package).joinpath(name).read_text("utf-8")


def packaged_path(package: str, name: str) -> Path:
    """A packaged file as a path (the package is installed as files, not zipped)."""
    return Path(str(resources.files(package).joinpath(name)))


def _where(package: str, name: str) -> str:
    return f"{package.removeprefix('oyster.').replace('.', '/')}/{name}"


def packaged_data(package: str, name: str, error: type[OysterError] = PolicyError) -> Any:
    """The parsed content of a packaged YAML file, or JSON where the name ends in .json."""
    text = packaged_text(package, name)
    try:
        return json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise error(f"{_where(package, name)}: not valid JSON: {e}") from e
    except yaml.YAMLError as e:
        raise error(f"{_where(package, name)}: not valid YAML: {e}") from e


def packaged_model(package: str, name: str, model: type[M],
                   error: type[OysterError] = PolicyError) -> M:
    """A packaged YAML or JSON file validated as `model`."""
    data = packaged_data(package, name, error)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise error(f"{_where(package, name)}: {field_problem(e)}") from None
