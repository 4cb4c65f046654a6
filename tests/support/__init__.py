"""What the test modules share: work folders driven through `repro`, tiny-tier configs read from
experiments.toml, a fake full tier, MLflow stand-ins. Test modules import from here, never from
each other."""
