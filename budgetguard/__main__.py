"""``python -m budgetguard`` runs the command line."""

import sys

from budgetguard.cli import main

sys.exit(main())
