"""``python -m semcorr.data.download``: runs :func:`.cli.main`."""

import sys

from .cli import main

sys.exit(main())
