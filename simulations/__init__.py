"""One script per figure or table of the paper: ``python -m simulations.<name>`` (see the README).

Under a launcher (``torchrun``: ``RANK`` set), only rank 0 draws progress bars: the others get
``TQDM_DISABLE`` before any script imports tqdm (:mod:`simulations._launch`).
"""

import os as _os

if (_os.environ.get("RANK") or "0") != "0":
    _os.environ.setdefault("TQDM_DISABLE", "1")
