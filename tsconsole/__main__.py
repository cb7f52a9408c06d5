import sys

from tsconsole.cli import main

sys.exit(main())
