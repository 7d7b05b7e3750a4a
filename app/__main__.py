"""`python -m pipnet_core.app [SOURCE]`: the desktop app, as `pipnet-live`."""

import sys

from . import main

sys.exit(main())
