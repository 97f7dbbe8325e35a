"""`python -m icon_dsl.docs`: write docs/language.md, docs/errors.md and docs/methods.md."""

import sys

from .pages import main

sys.exit(main())
