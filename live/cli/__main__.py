"""``python -m live.cli``: the same as the ``mimicam`` command."""

import sys

from live.cli.main import main

sys.exit(main())
