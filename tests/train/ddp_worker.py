"""Run by tests/train/test_ddp.py under torchrun: train, then save this rank's final weights."""

import os
import sys

from safetensors.torch import save_file

from visionssm.train import TrainConfig, train

if __name__ == "__main__":
    out, batch_size = sys.argv[1], int(sys.argv[2])
    cfg = TrainConfig(output=os.path.join(out, "run"), epochs=1, batch_size=batch_size,
                      limit_train_batches=4, limit_val_batches=1, drop_path=0.0, warmup_epochs=0)
    model = train(cfg)
    rank = os.environ.get("RANK", "0")
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, os.path.join(out, f"rank{rank}.safetensors"))
