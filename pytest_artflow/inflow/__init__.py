"""Code that runs inside a flow's own processes: the launcher every process of
a run starts with (``launch``), better words for failures only a task can see
(``diagnostics``), the local run of remote-compute decorators (``remote``),
Metaflow's code package made on demand (``codepackage``), the keeper that ties
a run's life to the pytest process (``lifetime``) and the inputs of an
``artflow_step`` job (``stepjob``).

Every task process imports this package: it imports nothing itself, and its
modules import neither pytest nor the pytest-side modules of pytest-artflow
(``tests/test_architecture.py`` checks it).
"""
