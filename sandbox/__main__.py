"""`python -m sandbox`: the `sandbox` command; only hands over to sandbox.cli.main, no logic."""

import sys

from sandbox.cli import main

sys.exit(main())
