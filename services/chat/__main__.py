import sys

from services.bus.startup import lean_imports

lean_imports()

from services.chat.service import Chat  # noqa: E402 (after lean_imports)

sys.exit(Chat.main())
