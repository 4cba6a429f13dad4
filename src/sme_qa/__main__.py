"""``python -m sme_qa`` is the ``sme-qa`` command."""

import sys

from .cli import main

sys.exit(main())
