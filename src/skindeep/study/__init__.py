"""The predictive study: does the geometry of an aligned/base pair predict refusal retention?

Cross-model statistics live in `statistics` (pure numpy/scipy); the config, runner, executors
and `study.json` result live beside it.
"""
