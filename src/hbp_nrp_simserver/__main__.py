"""``python -m hbp_nrp_simserver``: the Simulation Server process."""

import sys

from hbp_nrp_simserver.server import main

if __name__ == "__main__":
    sys.exit(main())
