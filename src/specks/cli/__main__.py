"""``python -m specks.cli``: the ``specks`` command."""

import sys

from . import main

sys.exit(main())
