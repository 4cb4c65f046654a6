"""The tiny tier's fixtures: random tiny models in the published layouts, miniature data sets in
the published formats, and random FID feature extractors. Nothing here is used at full size."""
