import sys

from mpsearch.cli import main

sys.exit(main())
