"""rq's helpers swapped for faster ones (rq_gevent.speedups) give rq's answers, and rq uses them."""

import datetime
import random
import zoneinfo

import pytest
import rq.job
import rq.serializers
import rq.utils
from rq.serializers import DefaultSerializer, JSONSerializer

from rq_gevent import GeventWorker, speedups

UTC = datetime.UTC
OFFSETS = [None, UTC, datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
           datetime.timezone(datetime.timedelta(hours=-8))]  # fmt: skip


class SubclassedDatetime(datetime.datetime):
    def strftime(self, fmt: str) -> str:
        return "its own"


def some_datetimes() -> list[datetime.datetime]:
    chance = random.Random(20261205)
    moments = [datetime.datetime(2026, 12, 5, 13, 4, 28, 432599, tzinfo=UTC), datetime.datetime(2026, 1, 1),
               datetime.datetime(1000, 1, 1, tzinfo=UTC), datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
               datetime.datetime(999, 12, 31, 1, 2, 3, 4), datetime.datetime(1, 1, 1, tzinfo=UTC),
               datetime.datetime(2026, 3, 29, 1, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin")),
               SubclassedDatetime(2026, 12, 5, 13, 4, 28)]  # fmt: skip
    for _ in range(2000):
        seconds = chance.uniform(-30e9, 250e9)  # years 1019 to 9892
        moment = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=seconds)
        moment = moment.replace(microsecond=chance.choice([0, 1, 999999, chance.randrange(1_000_000)]))
        moments.append(moment.replace(tzinfo=chance.choice(OFFSETS)))
    return moments


def some_timestamps() -> list[str]:
    written = [rq.utils.utcformat(moment) for moment in some_datetimes()]
    odd = ["2026-12-05T13:04:28Z", "2026-12-05T13:04:28.4Z", "2026-12-05T13:04:28.123Z", "2026-12-05T13:04:28.432599",
           "2026-12-05T13:04:28,432599Z", "2026-12-05 13:04:28.432599Z", "2026-13-05T13:04:28.432599Z",
           "2026-02-30T13:04:28.432599Z", "2026-12-05T24:00:00.000000Z", "2026-12-05T23:59:60.000000Z",
           "2026-12-05T13:04:28.43259xZ", "2026-12-05T13:04:28.-32599Z", "+026-12-05T13:04:28.432599Z",
           "２０２６-12-05T13:04:28.432599Z", "2026-12-05T13:04:28.４32599Z", "0999-12-31T01:02:03.000004Z",
           "2026-1-005T13:04:28.432599Z", "2026-12-05T13:4:028.432599Z", " 2026-12-05T13:04:28.43259Z", ""]  # fmt: skip
    return written + odd


def outcome(function, argument):
    try:
        value = function(argument)
    except Exception as error:
        return ("raises", type(error))
    return ("returns", value, getattr(value, "tzinfo", None))


def disagreements(ours, theirs, arguments) -> list:
    return [(argument, outcome(ours, argument), outcome(theirs, argument)) for argument in arguments
            if outcome(ours, argument) != outcome(theirs, argument)]  # fmt: skip


def test_the_comparison_finds_helpers_that_differ():
    """The instrument: isoformat without the cut differs from rq's on any aware datetime, and
    fromisoformat without the layout check on a comma or a space rq does not take."""
    found = disagreements(lambda dt: dt.isoformat() + "Z", speedups._rq_utcformat, some_datetimes())
    assert len(found) > 1000
    loose = lambda string: datetime.datetime.fromisoformat(string.rstrip("Z")).replace(tzinfo=UTC)  # noqa: E731
    found = {argument for argument, _, _ in disagreements(loose, speedups._rq_utcparse, some_timestamps())}
    assert {"2026-12-05T13:04:28,432599Z", "2026-12-05 13:04:28.432599Z"} <= found


def test_timestamps_are_written_as_rq_writes_them():
    assert disagreements(speedups.utcformat, speedups._rq_utcformat, some_datetimes()) == []


def test_timestamps_are_read_as_rq_reads_them():
    timestamps = some_timestamps()
    assert disagreements(speedups.utcparse, speedups._rq_utcparse, timestamps) == []
    assert sum(outcome(speedups.utcparse, timestamp)[0] == "raises" for timestamp in timestamps) >= 10


class OwnSerializer:
    dumps = loads = staticmethod(bytes)


def test_serializers_are_resolved_as_rq_resolves_them():
    for serializer in (None, DefaultSerializer, JSONSerializer, "rq.serializers.JSONSerializer", OwnSerializer):
        assert speedups.resolve_serializer(serializer) is speedups._rq_resolve_serializer(serializer)
    with pytest.raises(NotImplementedError):
        speedups.resolve_serializer(object())


class Owner:
    @staticmethod
    def static():
        return "static"

    class Inner:
        value = 1


def dotted_names() -> list[str]:
    here = __name__
    return [f"{here}.some_datetimes", f"{here}.Owner", f"{here}.Owner.static", f"{here}.Owner.Inner",
            f"{here}.Owner.Inner.value", f"{here}.missing", f"{here}.Owner.missing", f"{here}.", "len", "nothing",
            "os.path.join", "os.path", "os.sep", "rq.utils.import_attribute", "rq.job.Job.fetch",
            "no_such_module.f", "no_such_package.module.f", "", ".", "..", f"{here}..Owner", "zoneinfo.ZoneInfo",
            "json.decoder.JSONDecodeError", "tests_not_a_module.x.y"]  # fmt: skip


def test_dotted_names_are_imported_as_rq_imports_them():
    assert disagreements(speedups.import_attribute, speedups._rq_import_attribute, dotted_names()) == []
    assert sum(outcome(speedups.import_attribute, name)[0] == "raises" for name in dotted_names()) >= 6
    # The instrument: a lookup that skips rq's fallbacks differs from rq's.
    bare = lambda name: getattr(__import__("sys").modules[name.rpartition(".")[0]], name.rpartition(".")[2])  # noqa: E731
    assert disagreements(bare, speedups._rq_import_attribute, dotted_names())


def test_rq_uses_them_once_a_worker_exists_and_keeps_what_someone_else_replaced(connection, monkeypatch):
    import rq.worker

    def their_own(dt):
        return "theirs"

    monkeypatch.setattr(rq.job, "utcformat", their_own)
    GeventWorker(["default"], connection=connection)
    assert rq.job.utcformat is their_own
    assert rq.utils.utcformat is speedups.utcformat and rq.utils.utcparse is speedups.utcparse  # str_to_date's
    assert rq.job.resolve_serializer is speedups.resolve_serializer
    assert rq.job.import_attribute is speedups.import_attribute
    worker_module = getattr(rq.worker, "base", rq.worker)  # rq >= 2.4 made rq.worker a package
    assert worker_module.utcformat is speedups.utcformat
