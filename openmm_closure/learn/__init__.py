"""Learning the closure: the stage-1 objectives, the training batches, the two-stage
loop and its data-parallel glue, stage-2 selection, and the trained model with its
files (``config.json``, ``train_config.toml``). Torch side.

A namespace only: it imports nothing, so that importing one module of it loads
none of the others.
"""
