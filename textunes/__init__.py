"""Console entry point package for TexTuneS (``textunes``)."""
