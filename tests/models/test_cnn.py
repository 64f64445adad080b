"""The configurable CNN: shapes, sizes, config errors, learning, initialisation, ONNX export."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from shipyard.data.errors import ConfigError
from shipyard.models import CNNConfig, build_cnn, count_parameters


def config(**fields: object) -> CNNConfig:
    return CNNConfig.model_validate(fields)


@pytest.mark.parametrize(("cfg", "shape", "classes"), [
    (CNNConfig(), (1, 28, 28), 10),
    (CNNConfig(), (3, 32, 32), 7),
    (config(blocks=[{"channels": 4, "pool": "none"}], head={"hidden": []}), (1, 8, 8), 3),
    (config(blocks=[{"channels": 8, "stride": 2, "kernel_size": 5, "padding": 0},
                    {"channels": 8, "pool": "avg", "activation": "gelu", "batch_norm": False}],
            head={"hidden": [32, 16], "dropout": 0.0, "activation": "silu"}), (3, 40, 30), 2),
    (config(blocks=[{"channels": 8, "residual": True, "convs": 2},
                    {"channels": 16, "residual": True, "stride": 2, "activation": "leaky_relu"},
                    {"channels": 16, "residual": True, "pool": "none"}],
            global_pool="avg"), (3, 17, 23), 4),
    (config(blocks=[{"channels": 6}], global_pool="max", head={"hidden": [5]}), (1, 5, 9), 2),
])
def test_output_shape(cfg: CNNConfig, shape: tuple[int, int, int], classes: int) -> None:
    model = build_cnn(cfg, shape[0], shape[1], shape[2], classes).eval()
    for batch in (1, 5):
        out = model(torch.randn(batch, *shape))
        assert out.shape == (batch, classes) and out.dtype == torch.float32
    model.train()
    assert model(torch.randn(2, *shape)).shape == (2, classes)


def test_default_architecture_and_parameter_count() -> None:
    model = build_cnn(CNNConfig(), 1, 28, 28, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 64, 128, 128]
    assert all(c.bias is None for c in convs)  # batch norm follows every conv
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 5
    dropouts = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.25, 0.3]  # after the last block, after the hidden layer
    # convs (weights + BN scale and shift), flatten 128*3*3 -> 256 -> 10
    expected = (9 * 32 + 64) + (9 * 32 * 64 + 128) + (9 * 64 * 64 + 128) + \
        (9 * 64 * 128 + 256) + (9 * 128 * 128 + 256) + (1152 * 256 + 256) + (256 * 10 + 10)
    assert expected == 575_338
    assert count_parameters(model) == expected
    assert 100_000 < expected < 1_000_000
    # global pooling makes the head independent of the image size
    pooled = config(global_pool="avg")
    assert count_parameters(build_cnn(pooled, 1, 28, 28, 10)) == \
        count_parameters(build_cnn(pooled, 1, 64, 48, 10)) < expected
    assert count_parameters(build_cnn(CNNConfig(), 3, 28, 28, 10)) == expected + 2 * 9 * 32


def test_bad_config_is_a_validation_error_with_the_field_path() -> None:
    cases = [
        ({"blocks": [{"channels": 8}, {"channels": 0}]}, ("blocks", 1, "channels")),
        ({"blocks": [{"channels": 8, "activation": "tanh"}]}, ("blocks", 0, "activation")),
        ({"blocks": [{"channels": 8, "dropout": 1.0}]}, ("blocks", 0, "dropout")),
        ({"blocks": [{"channels": 8, "kernal_size": 3}]}, ("blocks", 0, "kernal_size")),
        ({"head": {"hidden": [16, 0]}}, ("head", "hidden", 1)),
        ({"head": {"dropout": -0.1}}, ("head", "dropout")),
        ({"blocks": []}, ("blocks",)),
        ({"global_pool": "mean"}, ("global_pool",)),
    ]
    for fields, loc in cases:
        with pytest.raises(ValidationError) as info:
            CNNConfig.model_validate(fields)
        assert info.value.errors()[0]["loc"] == loc, fields


def test_too_much_pooling_is_a_config_error() -> None:
    cfg = config(blocks=[{"channels": 4}] * 4)
    with pytest.raises(ConfigError, match=r"model.blocks\[3\] makes the 8x8 input 0x0"):
        build_cnn(cfg, 1, 8, 8, 10)
    with pytest.raises(ConfigError, match="num_classes must be an integer >= 1"):
        build_cnn(CNNConfig(), 1, 28, 28, 0)


def test_initialisation() -> None:
    torch.manual_seed(0)
    cfg = config(blocks=[{"channels": 64, "batch_norm": False}], head={"hidden": [512]})
    model = build_cnn(cfg, 16, 8, 8, 10)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    weight, hidden, classifier = (conv.weight.detach(), linears[0].weight.detach(),
                                  linears[1].weight.detach())
    # Kaiming normal, fan_out: std = sqrt(2 / (64 * 3 * 3))
    assert float(weight.std()) == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)
    assert conv.bias is not None and float(conv.bias.detach().abs().max()) == 0.0
    # the hidden layer: Kaiming fan_in; the classifier: Glorot uniform, bound sqrt(6/(in+out))
    assert float(hidden.std()) == pytest.approx((2 / (64 * 4 * 4)) ** 0.5, rel=0.05)
    bound = (6 / (512 + 10)) ** 0.5
    assert float(classifier.abs().max()) <= bound
    assert float(classifier.std()) == pytest.approx(bound / 3 ** 0.5, rel=0.1)


def test_tiny_model_overfits_64_images() -> None:
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images[:64] / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target[:64], dtype=torch.int64)
    cfg = config(blocks=[{"channels": 8}, {"channels": 16}],
                 head={"hidden": [32], "dropout": 0.0})
    model = build_cnn(cfg, 1, 8, 8, 10)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss = nn.functional.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    assert accuracy == 1.0 and loss.item() < first / 10


def test_onnx_export_with_dynamic_batch(tmp_path: Path) -> None:
    import onnxruntime as ort

    cfg = config(blocks=[{"channels": 8, "residual": True, "convs": 2},
                         {"channels": 16, "residual": True, "stride": 2, "pool": "avg",
                          "activation": "gelu"}],
                 head={"hidden": [16]})
    model = build_cnn(cfg, 3, 20, 20, 5).eval()
    with warnings.catch_warnings():  # torch 2.13's exporter warns about its own internals
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        program = torch.onnx.export(
            model, (torch.randn(2, 3, 20, 20),), dynamo=True, input_names=["image"],
            output_names=["logits"], dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    assert program is not None
    path = tmp_path / "model.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "image" and inp.shape[1:] == [3, 20, 20] and isinstance(inp.shape[0], str)
    assert out.name == "logits" and out.shape[1:] == [5]
    x = torch.randn(7, 3, 20, 20)
    with torch.no_grad():
        expected = model(x).numpy()
    got = session.run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
