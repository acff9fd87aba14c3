"""``python -m newsletter.cli``: the same as the ``newsletter`` console script."""

from __future__ import annotations

import sys

from newsletter.cli import main

sys.exit(main())
