"""A worker --config module wiring sentry-sdk by hand, as rq users do today (defaults kept:
local variables on, no PII).  The DSN points at scripts/peers/sentry_sink.py."""

import os

import sentry_sdk
from sentry_sdk.integrations.rq import RqIntegration

sentry_sdk.init(dsn=os.environ["TEST_SENTRY_DSN"], integrations=[RqIntegration()])

SENSITIVE_JOBS = ["sentryjobs.leak_by_*", "sentryjobs.derived_by_*"]
