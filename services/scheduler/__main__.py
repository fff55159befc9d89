import sys

from services.scheduler.service import Scheduler

sys.exit(Scheduler.main())
