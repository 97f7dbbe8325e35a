"""The optional `train` extra: the packages training needs beyond the compiler's own.

The compiler (check, compile, explain, enumerate) needs only lark, torch, sympy, jinja2 and
networkx; `icon-dsl train` also needs scikit-learn (the digits data set and the metrics),
matplotlib (the pictures) and tqdm (the progress bar). `require_train_extra` turns their absence
into one message that says which command installs them, instead of an ImportError from deep in
the runtime.
"""

from __future__ import annotations

import importlib.util

from .errors import TrainError

# import name -> the name pip installs it under
TRAIN_PACKAGES = {"sklearn": "scikit-learn", "matplotlib": "matplotlib", "tqdm": "tqdm"}

INSTALL_COMMAND = "pip install 'icon-dsl[train]'"
INSTALL_FROM_CHECKOUT = "pip install -e '.[train]'"


def missing_train_packages() -> list[str]:
    """The pip names of the training packages that are not installed, in a fixed order.

    They are looked up, not imported: a run imports scikit-learn and matplotlib where it uses
    them, in its helper process on the command line (helper.py)."""
    return [
        package
        for module, package in TRAIN_PACKAGES.items()
        if importlib.util.find_spec(module) is None
    ]


def require_train_extra(command: str = "icon-dsl train") -> None:
    """Raise TrainError naming the missing packages and the install command, if any is missing."""
    missing = missing_train_packages()
    if missing:
        raise TrainError(
            f"{command} needs the training extra; missing: {', '.join(missing)}. "
            f"Install it with: {INSTALL_COMMAND} (in a checkout of icon-dsl: "
            f"{INSTALL_FROM_CHECKOUT})"
        )
