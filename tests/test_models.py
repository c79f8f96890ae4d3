import pytest
import torch
from torch import nn

from digitrec.errors import UserError
from digitrec.models import MODELS, count_parameters, create_model


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("num_classes", [10, 26])
def test_model_shape_nans_and_size(name, num_classes):
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes)
    x = torch.randn(5, 1, 28, 28)
    model.train()
    out = model(x)
    assert out.shape == (5, num_classes)
    assert torch.isfinite(out).all()
    out.sum().backward()  # every parameter takes part
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(x[:1]).shape == (1, num_classes)
    assert 1_000 < count_parameters(model) < 5_000_000


def test_seed_is_the_documented_baseline():
    model = create_model("seed")
    layers = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    kinds = [type(m) for m in layers]
    assert kinds == [nn.Conv2d, nn.ReLU, nn.Flatten, nn.Linear]
    assert count_parameters(model) == (9 * 32 + 32) + (32 * 26 * 26 * 10 + 10)


def test_unknown_model_lists_the_choices():
    with pytest.raises(UserError, match="unknown model 'nope'.*seed"):
        create_model("nope")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_inference_copy_gives_the_same_answers(name):
    from digitrec.models import for_inference

    torch.manual_seed(0)
    model = create_model(name)
    model.train()
    for _ in range(3):  # move batch-norm statistics away from their initial values
        model(torch.randn(64, 1, 28, 28) * 2 + 0.5)
    model.eval()
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(32, 1, 28, 28)
    fused = for_inference(model)
    with torch.no_grad():
        assert torch.allclose(model(x), fused(x), atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == n_bn  # the original is untouched
