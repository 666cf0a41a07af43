"""``python -m transformer_np ...``: see :mod:`transformer_np.cli.main`."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
