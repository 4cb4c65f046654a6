"""Evaluation: MS-COCO FID, DreamBench (generation and DINO / CLIP scores), the similarity
scorers, and sample sheets for people to look at."""
