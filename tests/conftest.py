import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synth import make_idx_folder  # noqa: E402

torch_threads = os.environ.get("DIGITREC_TEST_THREADS")


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A folder of synthetic MNIST-format files: 600 training and 200 test images, 10 classes."""
    return make_idx_folder(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="session")
def synth_run(synth_dir, tmp_path_factory) -> Path:
    """A finished training run on the synthetic data (seed model, 2 epochs): its run folder."""
    from digitrec.training.config import TrainConfig
    from digitrec.training.loop import train

    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(dataset=str(synth_dir), epochs=2, batch_size=64, val_size=100, device="cpu"), out, quiet=True)
    return out


@pytest.fixture
def real_mnist():
    """The real MNIST tensors, or a skip saying why they are not here."""
    from digitrec.data.load import load
    from digitrec.errors import DataError

    try:
        return load("mnist", fetch_missing=False)
    except DataError as e:
        pytest.skip(f"real MNIST not in the cache ({e}); run `digitrec fetch` first")
