"""`repro` options that shrink a tiny-tier run to seconds, shared by the end-to-end tests."""

ONE_THREAD = ["--threads", "1"]
SHORT_TRAINING = ["--set", "train.steps=12", "--set", "train.checkpoint_every=4", "--set", "train.eval_every=6"]
QUICK_LOGS_AND_FID = ["--set", "train.log_every=2", "--set", "fid.num_captions=16", "--set", "fid.steps=4",
                      "--set", "fid.feature_extractor=tiny-random-conv"]
FAST = ONE_THREAD + SHORT_TRAINING + QUICK_LOGS_AND_FID
