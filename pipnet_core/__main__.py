import sys

from pipnet_core.cli import main

sys.exit(main())
