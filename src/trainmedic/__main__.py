import sys

from trainmedic.cli import main

sys.exit(main())
