"""Deprecated alias of `oyster.policy` (renamed after 0.1.0; this alias goes in the next release).

`import oyster.taxonomy`, `from oyster.taxonomy.policy import Policy` and the `.replies` and
`.cli` submodules still work, as the very same modules of `oyster.policy`, with a
DeprecationWarning.
"""

import sys
import warnings

from oyster.policy import *  # noqa: F403 - the alias re-exports the whole public surface
from oyster.policy import __all__, cli, policy, replies  # noqa: F401

warnings.warn("oyster.taxonomy is renamed oyster.policy; import from oyster.policy (the "
              "old name goes in the next release)", DeprecationWarning, stacklevel=2)

for _name, _module in (("policy", policy), ("replies", replies), ("cli", cli)):
    sys.modules[f"{__name__}.{_name}"] = _module
