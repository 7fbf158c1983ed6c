import sys

from autostrat.cli import main

sys.exit(main())
