import sys

from marketlab.cli.main import main

sys.exit(main())
