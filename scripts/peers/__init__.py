"""The real network peers of the tests, the demo and the benchmarks, in one importable place (``peers``,
with ``scripts/`` on ``sys.path``; pytest has it there).

Servers run as processes of their own (``python scripts/peers/<server>.py``): SMTP, UCenter, a Sentry
envelope sink, a black-holing TCP proxy.  Beside them: starting a server and waiting for it
(``processes``), MariaDB (``mariadb``), a throw-away CA (``tls``), apt installs (``system_packages``),
UCenter's tables (``ucenter_schema``) and a wall clock a test steps for the processes it starts
(``stepped_clock``, libfaketime).  The pytest fixtures around them are ``tests/peer_fixtures.py``.
"""
