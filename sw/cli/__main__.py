"""``python -m sw.cli``: the ``tern`` command line."""

import sys

from sw.cli import main

sys.exit(main())
