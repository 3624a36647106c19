"""``make soak``: the full fault-injection soak (workload and oracle in ``freshvec.testing.soak``)."""

from __future__ import annotations

import sys

from freshvec.testing.soak import main

if __name__ == "__main__":
    sys.exit(main())
