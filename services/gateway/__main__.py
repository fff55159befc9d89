import sys

from services.gateway.service import Gateway

sys.exit(Gateway.main())
