"""Job functions that web apps enqueue with ``Queue.enqueue`` and rq-gevent workers run.

``JOB_FUNCTIONS`` names them for a worker's ``ALLOWED_JOBS`` (``ALLOWED_JOBS = [*JOB_FUNCTIONS]`` in
its ``--config`` module): exactly these two, never ``jobs.*``, which would also allow the package's
helpers (``jobs.settings.setting`` reads any setting, the sealing key included).
"""

import importlib.util

# What the extra "jobs" installs, by import name: without one, a clear line at the first import of the
# job modules, not an import error deep inside one.
_EXTRA = {
    "cryptography": "cryptography",
    "email_validator": "email-validator",
    "pymysql": "PyMySQL",
    "bcrypt": "bcrypt",
    "urllib3": "urllib3",
    "defusedxml": "defusedxml",
}
_missing = [package for module, package in _EXTRA.items() if importlib.util.find_spec(module) is None]
if _missing:
    raise ImportError(f"the job modules need {', '.join(_missing)}: pip install 'rq-gevent[jobs]'")

JOB_FUNCTIONS = (
    "jobs.mail.activation.send_activation_mail",
    "jobs.discuz.sync.sync_discuz_user",
)
