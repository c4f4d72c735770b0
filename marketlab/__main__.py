import sys

from marketlab.cli import main

sys.exit(main())
