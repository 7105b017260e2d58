"""Datasets (TFDS builders), the input pipeline, the report tokenizer and the `data` command."""
