"""``python -m bench``: see ``bench/README.md``."""

import sys

from bench.cli import main

if __name__ == "__main__":  # worker processes are spawned: they import this module too
    sys.exit(main())
