import sys

from eventbunker.cli import main

sys.exit(main())
