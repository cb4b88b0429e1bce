"""`python -m arsl_tui.serving`: the gateway process (see `arsl_tui.serving.server`)."""

import sys

from arsl_tui.serving.server import main

sys.exit(main())
