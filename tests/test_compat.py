"""rq's and redis-py's private names: every one we rely on is in ``compat.PRIVATE_NAMES``, the
installed rq and redis-py have each, and no module but ``rq_gevent/compat.py`` uses any of rq's.

Runs on every rq of the matrix: a release that renames one fails here, not in a user's worker.
"""

import ast
import importlib
import inspect
import re
from pathlib import Path

import redis.client
import rq
import testjobs
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.scheduler import RQScheduler
from rq.worker import Worker

import rq_gevent
from rq_gevent import compat

PACKAGE = Path(rq_gevent.__file__).resolve().parent
PRIVATE = re.compile(r"_[a-z][a-z0-9_]*")
# compat's own names that look private: a key it keeps in a worker's ``__dict__``.
OWN = {"_rq_execution"}


def instances(connection) -> dict[str, object]:
    """One object of each class ``compat.PRIVATE_NAMES`` names, as the installed rq builds it."""
    queue = Queue("compat", connection=connection)
    job = Job.create(testjobs.green_sleep, args=(0,), connection=connection)
    pubsub = connection.pubsub()
    pubsub.subscribe("compat")
    return {
        "rq.worker.Worker": Worker([queue], connection=connection),
        "rq.job.Job": job,
        "rq.queue.Queue": queue,
        "rq.scheduler.RQScheduler": RQScheduler([queue], connection=connection),
        "rq.executions.Execution": Execution(id="e", job_id=job.id, connection=connection),
        "redis.client.PubSubWorkerThread": redis.client.PubSubWorkerThread(pubsub, sleep_time=1),
    }


def missing(names: dict[str, tuple[str, ...]], objects: dict[str, object]) -> list[str]:
    return [f"{owner}.{name}" for owner, owned in names.items() for name in owned
            if not hasattr(objects[owner], name)]  # fmt: skip


def test_the_installed_rq_has_every_private_name_we_rely_on(connection):
    objects = instances(connection)
    assert missing({"rq.job.Job": ("_no_such_name",)}, objects) == ["rq.job.Job._no_such_name"]  # it can fail
    assert missing(compat.PRIVATE_NAMES, objects) == [], rq.__version__
    assert compat.listener_stopped(objects["redis.client.PubSubWorkerThread"]) is False  # not told to stop


def test_redis_pys_reply_callbacks_are_found():
    callbacks = compat.resp2_callbacks(True)
    assert callable(callbacks["HGETALL"]) and callable(callbacks["PING"])


def private_names_used(source: str) -> set[str]:
    """Private names ``source`` reads or writes on other objects, defines as methods (overriding a
    base class's), or names in strings (``getattr``, tuples of method names), and private modules it
    imports from."""
    found = set()
    tree = ast.parse(source)
    in_f_strings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and PRIVATE.fullmatch(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            found.update(item.name for item in node.body
                         if isinstance(item, ast.FunctionDef) and PRIVATE.fullmatch(item.name))  # fmt: skip
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in in_f_strings:
            if PRIVATE.fullmatch(node.value):
                found.add(node.value)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.update(part for part in node.module.split(".") if PRIVATE.fullmatch(part))
    return found


def test_the_private_name_finder_finds_each_kind():
    source = (
        "from redis._parsers import x\n"
        "class W(Worker):\n    def _set_connection(self, c): self._own = c\n"
        "job._status = 1\ngetattr(t, '_running')\ngetattr(q, f'{name}_job_registry')\n"
    )
    assert private_names_used(source) == {"_parsers", "_set_connection", "_status", "_running"}


def test_every_private_name_compat_uses_is_listed():
    listed = {name for owned in compat.PRIVATE_NAMES.values() for name in owned} | {"_parsers"}
    used = private_names_used((PACKAGE / "compat.py").read_text())
    own_functions = {node.name for node in ast.parse((PACKAGE / "compat.py").read_text()).body
                     if isinstance(node, ast.FunctionDef | ast.ClassDef)}  # fmt: skip
    unlisted = used - listed - OWN - own_functions
    # rq 3 only: absent from the list on rq 2, still used (behind a getattr default).
    unlisted -= {"_unreadable_meta"}
    assert unlisted == set()


def rqs_private_names(connection) -> set[str]:
    """Every private name of the installed rq's worker, job, queue, registries, scheduler and
    executions, on the classes and on fresh instances."""
    names = set()
    for owner, thing in instances(connection).items():
        if owner.startswith("rq."):
            names.update(vars(thing))
            names.update(dir(type(thing)))
    for module_name in ("rq.registry", "rq.intermediate_queue", "rq.worker", "rq.job", "rq.queue"):
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__.startswith("rq."):
                names.update(dir(value))
    return {name for name in names if PRIVATE.fullmatch(name)}


def test_no_module_but_compat_uses_one_of_rqs_private_names(connection):
    rqs = rqs_private_names(connection)
    assert {"_set_connection", "_status", "_enqueue_job"} <= rqs  # the list of rq's names is rq's
    used = {
        path.relative_to(PACKAGE).as_posix(): sorted(found)
        for path in PACKAGE.rglob("*.py")
        if path.name != "compat.py" and (found := private_names_used(path.read_text()) & (rqs | {"_parsers"}))
    }
    assert used == {}


def test_the_text_rqs_maintenance_fails_a_stuck_job_with_is_the_installed_rqs():
    """rq says why it fails a job it found in ``:intermediate`` only in that text: the worker requeues
    such a job (never started) by it, so the text must be the installed rq's, word for word."""
    from rq.intermediate_queue import IntermediateQueue

    assert f"exc_string={compat.STUCK_IN_INTERMEDIATE!r}" in inspect.getsource(IntermediateQueue.cleanup)
    assert compat.stuck_in_intermediate(compat.STUCK_IN_INTERMEDIATE)
