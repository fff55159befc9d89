import sys

from services.bus.startup import lean_imports

lean_imports()

from services.scheduler.service import Scheduler  # noqa: E402 (after lean_imports)

sys.exit(Scheduler.main())
