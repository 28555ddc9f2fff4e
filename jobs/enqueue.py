"""What app code calls: enqueue with a stable job id, a description without secrets, and sane TTLs.

    from jobs.enqueue import enqueue_activation_mail, enqueue_discuz_sync
    from jobs.sealing import seal

    enqueue_activation_mail(queue, to=user.email, name=user.name, link=activation_url)
    enqueue_discuz_sync(queue, user_id=user.id, username=user.name, email=user.email,
                        password=seal(form.password))

Enqueuing the same activation (same address and link) or the same user's sync again while the first
job is queued, running or finished returns that job instead of a second one.  Once it failed, was
stopped or canceled, enqueueing it again replaces it with a fresh job: a new attempt budget, out of
the failed registry.  No ``Retry`` policy is set on purpose: the jobs return ``Retry`` themselves for
transient failures only (see jobs.outcomes).  Descriptions name the job and its non-personal inputs
only; both jobs are ``@sensitive``, so workers log them by id anyway.
"""

from __future__ import annotations

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from jobs.discuz.sync import sync_discuz_user
from jobs.mail.activation import send_activation_mail
from jobs.mail.message import activation_digest
from jobs.sealing import Sealed, arguments_refusal

RESULT_TTL = 7 * 24 * 3600
FAILURE_TTL = 30 * 24 * 3600
JOB_TIMEOUT = 120
_RERUNNABLE = {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


def enqueue_activation_mail(queue: Queue, to: str, name: str, link: str, locale: str = "en") -> Job:
    return _enqueue_once(
        queue,
        send_activation_mail,
        job_id=f"activation-mail-{activation_digest(to.strip(), link)[:32]}",
        description=f"send_activation_mail(locale={locale!r})",
        kwargs={"to": to, "name": name, "link": link, "locale": locale},
    )


def enqueue_discuz_sync(
    queue: Queue,
    user_id: int | str,
    username: str,
    email: str,
    password: Sealed | None = None,
    password_hash: Sealed | None = None,
    regip: str = "",
) -> Job:
    for value in (password, password_hash):
        if value is not None and not isinstance(value, Sealed):
            raise TypeError("seal the password (jobs.sealing.seal) before enqueueing it")
    if (password is None) == (password_hash is None):
        raise TypeError("pass exactly one of password= or password_hash=")
    credential = {"password": password} if password is not None else {"password_hash": password_hash}
    return _enqueue_once(
        queue,
        sync_discuz_user,
        job_id=f"discuz-sync-{user_id}",
        description=f"sync_discuz_user(user_id={user_id!r})",
        kwargs={"username": username, "email": email, "regip": regip, **credential},
    )


def _enqueue_once(queue: Queue, function, job_id: str, description: str, kwargs: dict) -> Job:
    refusal = arguments_refusal(function, (), kwargs)
    if refusal is not None:  # the worker would refuse it too, after storing it: fail here instead
        raise TypeError(f"{function.__qualname__}: {refusal}")
    try:
        existing = Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
    except NoSuchJobError:
        existing = None
    if existing is not None:
        if existing.get_status(refresh=False) not in _RERUNNABLE:
            return existing
        existing.delete()  # its retries, meta and registry entries belong to the attempt that ended
    return queue.enqueue(
        function,
        kwargs=kwargs,
        job_id=job_id,
        description=description,
        result_ttl=RESULT_TTL,
        failure_ttl=FAILURE_TTL,
        job_timeout=JOB_TIMEOUT,
    )
