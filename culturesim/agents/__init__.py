"""Persona agents, the role-play engine, the prober, the judge and the intent annotator."""
