import sys

from services.mcp.service import McpServer

sys.exit(McpServer.main())
