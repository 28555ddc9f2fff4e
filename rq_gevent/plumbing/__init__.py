"""The Redis plumbing: connections, waiting out outages, rq's transactions as script calls
pipelined across greenlets, rq's writes for a job's start and end, the pop, the Lua scripts."""
