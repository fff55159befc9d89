import sys

from services.executor.service import Executor

sys.exit(Executor.main())
