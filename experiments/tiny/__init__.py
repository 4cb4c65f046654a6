"""The tiny tier's fixtures: random tiny models in the published layouts, miniature data sets in
the published formats, and random FID feature extractors. No run at full size loads them; the
full-size fixtures (experiments/fixtures/) reuse their data builders, the offline CLIP tokenizer
and the random Inception weights, at the published sizes."""
