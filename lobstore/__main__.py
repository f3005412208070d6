"""``python -m lobstore``: the ``lobstore`` command."""

import sys

from .cli import main

sys.exit(main())
