"""``python -m rq_gevent.launcher.report``: send one of the launcher's alerts to Sentry, then exit.

The launcher imports neither sentry-sdk nor anything of the application.  When it kills a worker
process, sees one die, or gives up on a crash loop, it starts this short-lived process with the
workers' options and the alert as JSON on stdin (``{"options", "kind", "message", "args",
"details"}``).  Sentry's settings are read exactly as a worker process reads them; without a DSN it
exits at once.  Delivery waits at most ``rq_gevent.integrations.sentry.FLUSH_SECONDS``.
"""

from rq_gevent.patching import patch

patch()

import json
import logging
import sys
from typing import Any

from rq_gevent.alerts import LOGGER_NAME, alert
from rq_gevent.options import UserError, WorkerOptions
from rq_gevent.run import add_paths, read_settings, sentry_settings


def report(payload: dict[str, Any]) -> bool:
    """Send the alert in ``payload``; False if Sentry is not configured."""
    options = WorkerOptions.from_command(payload["options"])
    add_paths(list(options.paths))
    sentry = sentry_settings(options, read_settings(options.config))
    if sentry is None:
        return False
    from ..integrations.sentry import close, init_sentry

    init_sentry(sentry)
    # The launcher has logged it already; here it only goes to Sentry.
    quiet = logging.getLogger(LOGGER_NAME)
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    alert(payload["kind"], payload["message"], *payload.get("args", ()), **payload.get("details", {}))
    close()
    return True


def main() -> None:
    try:
        report(json.load(sys.stdin))
    except UserError as error:
        print(f"rq-gevent: error: [alert reporter] {error}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
