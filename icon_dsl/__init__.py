"""icon-dsl: a declarative language and compiler for I-Con representation-learning objectives.

import icon_dsl
module = icon_dsl.compile("specs/simclr.icon")
SimCLR = module.load()
loss = SimCLR(temperature=0.5)(z, index=index)
"""

from .api import check, compile, load_source, parse
from .diagnostics import SpecError

__all__ = ["parse", "check", "compile", "load_source", "enumerate_methods", "SpecError"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    if name == "enumerate_methods":
        # imported on first use: check, compile and explain do not need the enumeration
        from .enumeration import enumerate_methods

        return enumerate_methods
    raise AttributeError(f"module 'icon_dsl' has no attribute {name!r}")
