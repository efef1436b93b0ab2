"""shepherd-bench: how cheaply can a small model, helped by a large one, reach the large model's accuracy?"""

__version__ = "0.1.0"
