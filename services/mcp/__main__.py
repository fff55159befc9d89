import sys

from services.bus.startup import lean_imports

lean_imports()

from services.mcp.service import McpServer  # noqa: E402 (after lean_imports)

sys.exit(McpServer.main())
