"""Benchmarks of jaxneurons against PyTorch (`run.py`) and across device counts (`scaling.py`)."""
