"""Where the test data live: ``shared/`` beside the repository (``../shared``).

``VEIL_SHARED`` overrides it (a checkout whose ``shared/`` is elsewhere). No test names an
absolute path of this machine.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VEIL_SHARED", REPO.parent / "shared"))
DATA = Path(os.environ.get("VEIL_DATA", SHARED / "data"))
INTEROP = SHARED / "interop"
