"""The fork server and the processes it forks (run zygotes, run and task
processes): ``server`` (the processes), ``messages`` (what they say to each
other and to the pytest process), ``markers`` (Metaflow's marker objects
re-bound per run), ``program`` (a fork that behaves like a fresh program) and
``tasklauncher`` (task processes as Metaflow's runtime sees them).

The server imports Metaflow once and forks from it, so nothing here imports
pytest or the pytest-side modules of pytest-artflow (``tests/test_architecture.py``
checks it); the ``fork`` engine (``engines/fork.py``) is its client.
"""
