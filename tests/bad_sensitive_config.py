"""A worker --config module with a common mistake: SENSITIVE_JOBS as one string, not a list."""

SENSITIVE_JOBS = "myapp.billing.*"
