"""Downstream adapters (zero-shot, retrieval, probes, segmentation, report generation) and the
benchmark suite that runs them on checkpoints: `chexficient bench`."""
