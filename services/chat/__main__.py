import sys

from services.chat.service import Chat

sys.exit(Chat.main())
