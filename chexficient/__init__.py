"""CheXficient: data-curating CLIP-style pretraining for chest X-ray foundation models."""

__version__ = "0.1.0"
