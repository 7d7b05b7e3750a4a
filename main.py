"""Start the pipnet-live desktop app: `python main.py [CAMERA_INDEX | VIDEO | IMAGE]` (see --help)."""

import sys

from pipnet_core.app import main

if __name__ == "__main__":
    sys.exit(main())
