"""Makes the collection importable as ``ansible_collections.mlops.notebooks`` from this checkout.

A symlink under build/dev points at the repository root, so tests always run the working tree.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV_COLLECTIONS = os.path.join(ROOT, "build", "dev")
_LINK = os.path.join(DEV_COLLECTIONS, "ansible_collections", "mlops", "notebooks")

if not os.path.islink(_LINK):
    os.makedirs(os.path.dirname(_LINK), exist_ok=True)
    try:
        os.symlink(ROOT, _LINK)
    except FileExistsError:  # another worker made it
        pass
if DEV_COLLECTIONS not in sys.path:
    sys.path.insert(0, DEV_COLLECTIONS)
