"""The pre-fork launcher: a master that never imports rq, and the worker processes it starts."""
