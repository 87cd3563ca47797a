"""Print the URL of the local PostgreSQL test database if one answers, else nothing.

``make test`` uses this to set CONVEYOR_TEST_POSTGRES_URL when it is unset, so that the PostgreSQL tests run
wherever a server is there (CI, and this project's machines) and skip with a reason elsewhere.
"""

from __future__ import annotations

import socket

URL = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            print(URL)
    except OSError:
        pass


if __name__ == "__main__":
    main()
