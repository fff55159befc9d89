import sys

from services.bus.startup import lean_imports

lean_imports(serves_http=True)

from services.gateway.service import Gateway  # noqa: E402 (after lean_imports)

sys.exit(Gateway.main())
