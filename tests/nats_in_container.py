"""Run a compose file's NATS service the way its container would, without Docker.

``python tests/nats_in_container.py ROOT ARGV...`` runs inside a new user and network namespace
(``unshare --user --map-root-user --net --fork``): it brings up loopback, starts ``ARGV`` (the
image's entrypoint and the compose command, exactly) with ``ROOT`` as the file system root (the
container's: the binary, the mounted config, the volume's directory), polls the monitoring port
the config names, prints one JSON object (``healthz``, ``varz``, ``exit``, ``log``) and stops the
server. The network namespace gives the config's fixed ports (4222, 8222) to this server alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

MONITOR = "http://127.0.0.1:8222"


def fetch(path: str) -> Any:
    try:
        with urllib.request.urlopen(MONITOR + path, timeout=2) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return {"status_code": error.code, "body": error.read().decode(errors="replace")}
    except (urllib.error.URLError, OSError, ValueError):
        return None


def main(root: str, argv: list[str]) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

    def enter_root() -> None:
        os.chroot(root)
        os.chdir("/")

    log_path = os.path.join(root, "server.log")
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            argv, preexec_fn=enter_root, stdout=log, stderr=subprocess.STDOUT, env={}
        )
    result: dict[str, Any] = {"healthz": None, "varz": None, "exit": None}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        healthz = fetch("/healthz?js-enabled-only=true")
        if healthz == {"status": "ok"}:
            result["healthz"] = healthz
            result["varz"] = fetch("/varz")
            break
        result["healthz"] = healthz
        time.sleep(0.1)
    if server.poll() is None:
        server.terminate()
        server.wait(10)
    else:
        result["exit"] = server.returncode
    with open(log_path, errors="replace") as written:
        result["log"] = written.read()[-4000:]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
