"""Worker classes for subprocess tests (``--worker-class testworkers.ShortTTLWorker``)."""

import os
from pathlib import Path

import gevent

from rq_gevent import GeventWorker


class ShortTTLWorker(GeventWorker):
    """Executions expire 1 s after their heartbeat is due (rq: 60 s), so rq's abandoned-job path
    can be exercised in seconds."""

    heartbeat_ttl_margin = 1


class GatedPrepareWorker(GeventWorker):
    """Before rq marks its first job started, waits for the test (files in ``$TEST_GATE_DIR``:
    it writes ``reached``, then waits for ``go``), which stops Redis meanwhile: rq's bookkeeping
    then fails before the job has run."""

    gate_used = False

    def prepare_job_execution(self, job, remove_from_intermediate_queue=False):
        if not GatedPrepareWorker.gate_used:
            GatedPrepareWorker.gate_used = True
            gate = Path(os.environ["TEST_GATE_DIR"])
            (gate / "reached").touch()
            while not (gate / "go").exists():
                gevent.sleep(0.05)
        super().prepare_job_execution(job, remove_from_intermediate_queue)
