"""``python -m specks``: the ``specks`` command."""

import sys

from .cli import main

sys.exit(main())
