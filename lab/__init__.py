"""The concurrency lab: the load engine, the join of client timings to traces, analysis."""
