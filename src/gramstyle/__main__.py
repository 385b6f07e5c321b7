"""``python -m gramstyle``: the command line (see `gramstyle.apps.cli`)."""

import sys

from .apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
