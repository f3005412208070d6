"""``python -m lobstore.cli``: the ``lobstore`` command."""

import sys

from . import main

sys.exit(main())
