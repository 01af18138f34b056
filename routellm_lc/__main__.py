"""`python -m routellm_lc`: the `routellm-lc` command."""

import sys

from routellm_lc.cli import main

sys.exit(main())
