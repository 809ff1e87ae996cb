"""`python -m loyalty.cli …`, the same as the `loyalty` command."""

import sys

from loyalty.cli import main

sys.exit(main())
