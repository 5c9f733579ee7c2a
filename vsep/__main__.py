import sys

from vsep.cli import main

sys.exit(main())
