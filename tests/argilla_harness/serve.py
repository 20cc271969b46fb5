"""Run argilla-server 2.8 with the in-memory test search engine, in ONE process.

    ARGILLA_SEARCH_ENGINE=rewardlab-memory <server-venv>/bin/python serve.py PORT API_KEY PASSWORD

Started by harness.py with the server venv's python and the ARGILLA_* settings in the
environment. It runs what `python -m argilla_server database migrate` and `... database users
create_default --api-key K --password P` run, through the same functions, then uvicorn: one
process (no workers), because the engine's index lives in it, and one start-up instead of three
(each `python -m argilla_server` command spends ~5 s importing the app).
"""

import sys

import memory_engine  # noqa: F401  (registers the "rewardlab-memory" engine)
import uvicorn
from argilla_server.cli.database.migrate import migrate_db
from argilla_server.cli.database.users.create_default import create_default

port, api_key, password = sys.argv[1:]
migrate_db(revision="head")
create_default(api_key=api_key, password=password, quiet=True)
uvicorn.run("argilla_server:app", host="127.0.0.1", port=int(port), access_log=False)
