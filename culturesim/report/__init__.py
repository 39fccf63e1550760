"""A static HTML report of a run: summary, dialogue browser, probe table, training, evaluation."""
