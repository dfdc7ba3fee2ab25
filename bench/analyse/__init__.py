"""Pure functions over bench.json: figures, statistics, quality, roofline, the decision."""
