"""Data: readers of the formats runs are configured with (captions, stage-3 manifests,
DreamBench), image preprocessing, which items each step trains on, stage-3 examples, and
`repro data build`."""
