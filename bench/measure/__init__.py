"""Running the backends: the two phases, scenarios, screening, batching, the workload, models."""
