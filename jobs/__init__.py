"""Job functions that web apps enqueue with ``Queue.enqueue`` and rq-gevent workers run.

``JOB_FUNCTIONS`` names them for a worker's ``ALLOWED_JOBS`` (``ALLOWED_JOBS = [*JOB_FUNCTIONS]`` in
its ``--config`` module): exactly these two, never ``jobs.*``, which would also allow the package's
helpers (``jobs.settings.setting`` reads any setting, the sealing key included).
"""

JOB_FUNCTIONS = (
    "jobs.mail.activation.send_activation_mail",
    "jobs.discuz.sync.sync_discuz_user",
)
