"""Deprecated alias of `oyster.train.run` (renamed after 0.1.0, see CHANGELOG.md): kept for
one release, then removed."""

import warnings

from oyster.train.run import LossPoint as LossPoint
from oyster.train.run import TrainingError as TrainingError
from oyster.train.run import TrainResult as TrainResult
from oyster.train.run import run as run

warnings.warn("oyster.train._runner is now oyster.train.run", DeprecationWarning, stacklevel=2)
