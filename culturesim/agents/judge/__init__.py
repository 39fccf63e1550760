"""The judge: rubrics as data, the judge agent, filter decisions and agreement statistics."""
