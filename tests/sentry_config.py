"""A worker --config module with Sentry settings (the DSN comes from TEST_SENTRY_DSN)."""

import os

SENTRY_DSN = os.environ["TEST_SENTRY_DSN"]
SENTRY_ENVIRONMENT = "from-config"
SENSITIVE_JOBS = ["sentryjobs.leak_by_*", "sentryjobs.derived_by_*"]
