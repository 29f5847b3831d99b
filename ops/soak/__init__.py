"""The chaos soak (``make soak``): the whole box for an accelerated day under seeded faults."""
