"""``python -m paragonsr.weights list|fetch ...`` = ``paragonsr weights list|fetch ...``."""

from paragonsr.weights import main

raise SystemExit(main())
