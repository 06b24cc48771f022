"""`python -m worldsim`: the `worldsim` command line."""

import sys

from worldsim.cli import main

sys.exit(main())
