"""skindeep: how deep is a model's safety alignment?

Reads the geometry of refusal in hidden states (aligned vs base), tests it causally, and checks
the prediction against refusal retention after benign fine-tuning.
"""

__version__ = "0.1.0"
