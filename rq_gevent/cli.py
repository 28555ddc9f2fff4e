"""``rq-gevent worker [QUEUES...]``: the command-line entry point, shaped like ``rq worker``.

Parsing imports nothing network-related.  A worker that runs in this process patches gevent before
redis or rq are imported; with ``-n N`` this process becomes the launcher (:mod:`rq_gevent.launcher.arbiter`),
which patches nothing and starts each worker as a fresh interpreter.
"""

import logging
import os
import sys
from typing import Any

import click
from click.core import ParameterSource

from rq_gevent._version import __version__
from rq_gevent.exceptions import WorkLoopDied
from rq_gevent.options import MAX_CONCURRENCY, UserError, WorkerOptions

from .launcher.supervision import WORK_LOOP_DIED_EXIT


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(__version__, "--version", prog_name="rq-gevent", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run RQ jobs many at a time per process, in gevent greenlets."""
    if ctx.invoked_subcommand is None:  # no command: the help, as printed, not a usage error in one line
        click.echo(ctx.get_help())


@cli.command("help", hidden=True)
@click.argument("command", required=False)
@click.pass_context
def help_command(ctx: click.Context, command: str | None) -> None:
    """``rq-gevent help [COMMAND]``: what ``rq-gevent [COMMAND] --help`` prints."""
    assert ctx.parent is not None
    if command is None:
        click.echo(ctx.parent.get_help())
        return
    found = cli.get_command(ctx.parent, command)
    if found is None:
        raise click.UsageError(f"No such command {command!r}.")
    click.echo(found.get_help(click.Context(found, info_name=command, parent=ctx.parent)))


# ``rq worker``'s short flags that mean something else here, and the option that means what rq's does.
# A value only rq's meaning takes (a module name for -c, a worker name for -n) is refused with a pointer.
RQ_FLAGS_MEANING_OTHERWISE = {"-c": "--config", "-n": "--name"}


class _Concurrency(click.IntRange):
    """``-c``: a whole number; a module name (rq's ``-c CONFIG``) is pointed to ``--config``."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
            rq_habit = value.isidentifier() or all(part.isidentifier() for part in value.split("."))
            pointer = " (-c is --concurrency here; rq worker's -c CONFIG is --config)" if rq_habit else ""
            self.fail(f"{value!r} is not a whole number{pointer}")
        return super().convert(value, param, ctx)


@cli.command(context_settings={"max_content_width": 100})
@click.argument("queues", nargs=-1)
@click.option(
    "-c",
    "--concurrency",
    type=_Concurrency(min=1, max=MAX_CONCURRENCY),
    default=None,
    help="Jobs run at once in this process (default 20, or CONCURRENCY in --config).",
)
@click.option(
    "-u",
    "--url",
    envvar=["REDIS_URL", "RQ_REDIS_URL"],
    help="Redis URL, e.g. redis://localhost:6379/0 [env: REDIS_URL, or rq's RQ_REDIS_URL].",
)
@click.option(
    "--config",
    "config",
    envvar="RQ_CONFIG",
    help="Python module with settings (REDIS_URL, QUEUES, CONCURRENCY, NAME...); jobs read theirs from it too "
    "[env: RQ_CONFIG].",
)
@click.option(
    "-P",
    "--path",
    "paths",
    multiple=True,
    default=["."],
    show_default=True,
    help="Prepended to sys.path to import jobs and classes (repeatable).",
)
@click.option("-b", "--burst", is_flag=True, help="Exit once the queues are empty and no job is running.")
@click.option("--name", help="Worker name (default: a random id). Must be unique among live workers.")
@click.option("--results-ttl", type=int, help="Seconds to keep job results (rq default 500).")
@click.option("--worker-ttl", type=click.IntRange(min=1), help="Seconds the worker key lives without a heartbeat.")
@click.option(
    "--job-monitoring-interval",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Seconds between heartbeats of the worker and every running job.",
)
@click.option(
    "--maintenance-interval",
    type=click.IntRange(min=1),
    default=600,
    show_default=True,
    help="Seconds between registry clean-ups.",
)
@click.option(
    "--graceful-timeout",
    type=click.FloatRange(min=0),
    help="On warm shutdown, wait this many seconds for running jobs, then shut down cold (default: wait for them).",
)
@click.option(
    "--redis-alert-after",
    type=click.FloatRange(min=1),
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="Log an alert (a Sentry event) once Redis has been unreachable (or out of memory) this long.",
)
@click.option(
    "--sentry-dsn",
    envvar="SENTRY_DSN",
    help="Report failed jobs and worker problems to Sentry (or SENTRY_DSN in --config) [env: SENTRY_DSN].",
)
@click.option(
    "--sentry-environment",
    envvar="SENTRY_ENVIRONMENT",
    help="Sentry environment, e.g. production [env: SENTRY_ENVIRONMENT].",
)
@click.option("--disable-job-desc-logging", is_flag=True, help="Log job ids instead of job descriptions.")
@click.option(
    "-l",
    "--logging_level",
    "--logging-level",
    "logging_level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
    help="Log level.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
@click.option("-q", "--quiet", is_flag=True, help="Log at WARNING level.")
@click.option("--log-format", help="logging format string.")
@click.option("--date-format", help="logging date format string.")
@click.option("--max-jobs", type=click.IntRange(min=1), help="Admit this many jobs, let them finish, then exit.")
@click.option(
    "--max-idle-time",
    type=click.IntRange(min=1),
    help="Exit after this many seconds with no job running and none dequeued.",
)
@click.option("-s", "--with-scheduler", is_flag=True, help="Also run rq's scheduler (in a greenlet of this worker).")
@click.option("-S", "--serializer", help="Serializer, as a dotted path (e.g. rq.serializers.JSONSerializer).")
@click.option("-j", "--job-class", envvar="RQ_JOB_CLASS", help="Job class, as a dotted path [env: RQ_JOB_CLASS].")
@click.option("--queue-class", envvar="RQ_QUEUE_CLASS", help="Queue class, as a dotted path [env: RQ_QUEUE_CLASS].")
@click.option(
    "-w",
    "--worker-class",
    envvar="RQ_WORKER_CLASS",
    help="Worker class: rq_gevent.GeventWorker or a subclass of it [env: RQ_WORKER_CLASS].",
)
@click.option(
    "--connection-class",
    envvar="RQ_CONNECTION_CLASS",
    help="Redis client class, as a dotted path (default redis.Redis) [env: RQ_CONNECTION_CLASS].",
)
@click.option(
    "--exception-handler", "exception_handlers", multiple=True, help="Dotted path of an exception handler (repeatable)."
)
@click.option(
    "-d",
    "--disable-default-exception-handler",
    is_flag=True,
    help="Do not store failed jobs' exceptions (rq's default handler).",
)
@click.option(
    "-ds",
    "--dequeue-strategy",
    type=click.Choice(["default", "round_robin", "random"]),
    default="default",
    show_default=True,
    help="Order in which queues are polled.",
)
@click.option(
    "-n",
    "--processes",
    default="1",
    show_default=True,
    help="Worker processes (at most 8 per usable CPU core), or 'auto' for one per usable core. With more than 1, "
    "this process supervises them (see --hub-timeout, --startup-timeout, --max-jobs-per-child, "
    "--max-memory-per-child).",
)
@click.option(
    "--hub-timeout",
    type=click.FloatRange(min=1),
    default=None,
    help="Kill and replace a worker process whose event loop has not run for this many seconds (default 30).",
)
@click.option(
    "--startup-timeout",
    type=click.FloatRange(min=1),
    default=None,
    help="Kill and replace a worker process still starting (imports, config module, connecting to Redis) "
    "this many seconds after its spawn (default 60; never less than --hub-timeout).",
)
@click.option(
    "--max-jobs-per-child",
    type=click.IntRange(min=1),
    help="Replace a worker process after about this many jobs (+0-10% jitter).",
)
@click.option(
    "--max-memory-per-child",
    type=int,
    metavar="MB",
    help="Replace a worker process whose memory (RSS) exceeds MB (-0-10% jitter); it finishes "
    "its running jobs first, and is killed at twice the limit.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    metavar="PORT",
    help="Serve Prometheus metrics on http://HOST:PORT/metrics (with -n, one endpoint for all processes).",
)
@click.option(
    "--metrics-host",
    default="0.0.0.0",
    show_default=True,
    help="Address --metrics-port listens on (127.0.0.1: this machine only).",
)
@click.option("--pid", "pid_file", type=click.Path(dir_okay=False, writable=True), help="Write the PID to this file.")
def worker(**parsed: Any) -> None:
    """Run a GeventWorker on QUEUES (default: "default"), highest priority first.

    \b
    Signals: SIGTERM or SIGINT once = warm shutdown (stop dequeuing, finish
    running jobs); a second time = cold shutdown (interrupt running jobs and put
    them back at the front of their queues). Exit code 0 in both cases; 70 if
    the worker's loop died on an unexpected error (after its running jobs ended).
    """
    from .launcher.supervision import needs_arbiter, resolve_processes

    from_environment = ""
    if click.get_current_context().get_parameter_source("url") is ParameterSource.ENVIRONMENT:
        both = os.environ.get("REDIS_URL"), os.environ.get("RQ_REDIS_URL")
        if all(both) and both[0] != both[1]:
            raise UserError("REDIS_URL and RQ_REDIS_URL in the environment name different Redis: unset one, or use -u")
        from_environment = next(name for name in ("REDIS_URL", "RQ_REDIS_URL") if os.environ.get(name))
    _check_pid_file(parsed["pid_file"])
    options = WorkerOptions.from_command(
        dict(parsed, processes=resolve_processes(parsed["processes"]), url_from_environment=from_environment)
    )
    if needs_arbiter(options):
        from .launcher.arbiter import Arbiter

        sys.exit(Arbiter(options).run())

    from rq_gevent.patching import first_thing_patch

    first_thing_patch()
    from rq_gevent.run import run_worker

    run_worker(options)


def _check_pid_file(path: str | None) -> None:
    """Before anything starts: the directory the PID file goes in exists and can be written."""
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"--pid {path}: directory {directory} does not exist or cannot be written")
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as error:
        raise UserError(f"--pid {path}: cannot be written: {error.strerror or error}") from None
    if not existed:
        os.unlink(path)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: bad input becomes one line on stderr and a non-zero exit."""
    try:
        cli.main(args=argv, prog_name="rq-gevent", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        click.echo(f"rq-gevent: error: {_one_line(error.format_message())}", err=True)
        sys.exit(error.exit_code)
    except UserError as error:
        click.echo(f"rq-gevent: error: {_one_line(str(error))}", err=True)
        sys.exit(1)
    except WorkLoopDied as error:
        click.echo(f"rq-gevent: error: the work loop died: {_one_line(str(error))}", err=True)
        sys.exit(WORK_LOOP_DIED_EXIT)
    finally:
        logging.shutdown()
    sys.exit(0)


def _one_line(message: str) -> str:
    return " ".join(message.split())
