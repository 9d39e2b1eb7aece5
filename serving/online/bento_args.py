"""The service's environment inside a Bento: the process environment over the Bento's defaults.

`nextbest bento` builds a Bento whose `args` (bentofile.yaml) are NEXTBEST_* defaults, such as
the baked-in bundle folder and online store. BentoML hands a Bento's args to the service wherever
the Bento runs (`bentoml serve <tag>`, its container), while bentofile `envs` reach only the
container; a variable set in the environment still wins. Relative paths are resolved against the
Bento's source folder, the working directory BentoML sets while it imports the service.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.errors import ConfigError

PREFIX = "NEXTBEST_"
PATHS = ("NEXTBEST_BUNDLE_DIR", "NEXTBEST_ONLINE_STORE", "NEXTBEST_DECISION_LOG")


def bento_defaults(args: Mapping[str, Any], base: Path) -> dict[str, str]:
    """The NEXTBEST_* defaults of a Bento's args, paths made absolute against `base`."""
    out = {}
    for name, value in args.items():
        if not name.startswith(PREFIX):
            raise ConfigError(f"Bento argument {name}: not a {PREFIX}* setting")
        text = str(value)
        out[name] = str(base / text) if name in PATHS and not Path(text).is_absolute() else text
    return out


def service_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables ServingSettings reads: the environment over the served Bento's defaults
    (none when the service runs from source: `nextbest serve`, `bentoml serve module:Class`)."""
    import bentoml

    args = vars(bentoml.use_arguments())
    env = os.environ if environ is None else environ
    return bento_defaults(args, Path.cwd()) | dict(env)
