import sys

from ..gaussians.cli import main

sys.exit(main())
