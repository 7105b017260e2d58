"""The embedded synthetic chest X-ray world: 3D thorax phantoms, radiographs, reports, truth."""
