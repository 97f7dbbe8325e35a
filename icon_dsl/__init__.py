"""icon-dsl: a declarative language and compiler for I-Con representation-learning objectives.

import icon_dsl
module = icon_dsl.compile("specs/simclr.icon")
SimCLR = module.load()
loss = SimCLR(temperature=0.5)(z, index=index)
"""

from .api import check, compile, load_source, parse
from .diagnostics import SpecError
from .enumeration import enumerate_methods

__all__ = ["parse", "check", "compile", "load_source", "enumerate_methods", "SpecError"]
__version__ = "0.1.0"
