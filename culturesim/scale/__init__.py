"""Scale-out: Ray actors holding model replicas, for simulation, probing and judging."""
