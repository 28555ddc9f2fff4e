"""A job's slot goes to the next job once its own code is over and its outcome is to be recorded
(``Admission.outcome_to_record``), with real greenlets: the pool's count, the loop's wake-up, and the
bound on greenlets recording at once."""

from __future__ import annotations

import gevent
import gevent.event

from rq_gevent.core.admission import Admission


def _job_recording_until(admission: Admission, released: gevent.event.Event) -> None:
    admission.outcome_to_record(gevent.getcurrent())
    released.wait()


def test_a_job_recording_its_outcome_leaves_its_slot_to_the_next_and_is_still_waited_for():
    admission = Admission(concurrency=1)
    released = gevent.event.Event()
    first = admission.spawn(_job_recording_until, admission, released)
    assert admission.full()
    admission.job_ended.clear()
    gevent.sleep(0)  # the first job runs to its outcome
    assert not admission.full() and admission.job_ended.is_set()  # the loop is woken for the next job

    second = admission.spawn(_job_recording_until, admission, released)
    gevent.sleep(0)
    # Two jobs recording, one slot: the second keeps its slot until its outcome is recorded.
    assert admission.full()
    admission.join(timeout=0.1)
    assert not first.dead and not second.dead  # join waits for the greenlets recording outcomes too
    released.set()
    admission.join(timeout=5)
    assert first.dead and second.dead and not admission.full()
