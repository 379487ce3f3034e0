"""`python -m pipeline` is the same as the `gbpipe` command."""

import sys

from .cli import main

sys.exit(main())
