"""Dataset builders: module `x` defines the TFDS builder of dataset `x`, registered with TFDS
as `chexficient_x`, a name TFDS's own catalog (which has a `chexpert`) cannot take."""

TFDS_PREFIX = "chexficient_"
"""What TFDS calls our dataset `x`: `chexficient_x` (e.g. tfds.builder("chexficient_chexpert"))."""

BUILD_SOURCE = "build_source.json"
"""The file, beside a real dataset's files, naming the manual dir it was built from and
counting the rows its tables put in no split."""
