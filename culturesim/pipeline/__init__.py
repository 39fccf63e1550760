"""The whole loop from one config: simulate, probe, judge, corpus, train, evaluate, report."""
