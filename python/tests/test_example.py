"""examples/train_resnet_torch.py runs (a few steps on the CPU) and resumes from its checkpoint."""

import subprocess
import sys

import pytest

from conftest import REPO, has_torch


@pytest.mark.skipif(not has_torch(), reason="torch is not installed")
def test_the_training_example_runs_and_resumes(tmp_path, shards):
    ck = tmp_path / "ck.pt"
    cmd = [sys.executable, str(REPO / "examples" / "train_resnet_torch.py"), "--data", str(shards),
           "--size", "32", "--batch", "8", "--epochs", "2", "--max-steps", "2", "--workers", "2",
           "--device", "cpu", "--checkpoint", str(ck)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600).stdout
    assert "epoch 0: train loss" in out and ck.exists()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600).stdout
    assert "resumed at epoch 0 batch 2" in out, out
