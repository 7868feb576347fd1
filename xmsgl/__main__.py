"""``python -m xmsgl`` runs the ``xmsgl`` command."""

import sys

from xmsgl.cli import main

sys.exit(main())
