"""`shipsure serve`: the long-running watcher. Notifications in, last results out.

- `events.py`    parse a registry's notifications (distribution's envelope, Harbor's webhook)
- `pushqueue.py` the bounded queue of pushes to verify: coalesced per digest, debounced
- `store.py`     state in SQLite: findings with first-seen and resolved times, tag states,
                 probe summaries, recent push verifications
- `watcher.py`   the worker threads: push verifications and the scheduled probe
- `metrics.py`   Prometheus metrics from the last results (a scrape never asks the registry)
- `page.py`      the server-rendered status page
- `server.py`    the HTTP endpoints
- `logs.py`      text or JSON-lines logs
"""
