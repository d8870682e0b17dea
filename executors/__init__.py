"""Ready-made executors built on the public ``runtime`` API, and the demo (``python -m executors.demo``)."""
