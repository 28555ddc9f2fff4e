"""What the worker reports to: Sentry (and its scrubbing of secrets), Prometheus metrics."""
