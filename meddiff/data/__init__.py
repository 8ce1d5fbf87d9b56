"""Data layer: dataset registry, download, image I/O, the embedded phantom cohort, masks, preprocessing."""
