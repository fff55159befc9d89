import sys

from services.executor.fleet import Fleet

sys.exit(Fleet.main())
