import sys

from services.bus.startup import lean_imports

lean_imports()

from services.executor.fleet import Fleet  # noqa: E402 (after lean_imports)

sys.exit(Fleet.main())
