"""The prober (CultureSPA): culture topics, question generation, culture-related instances."""
