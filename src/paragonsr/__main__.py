import sys

from paragonsr.cli import main

sys.exit(main())
