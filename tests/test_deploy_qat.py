"""Quantization-aware training and its QDQ INT8 export: learned scales in the file, QAT beats PTQ, the gate."""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import pytest
import torch
from torch import nn

from paragonsr.deploy import verify as V
from paragonsr.deploy.qat import (
    ActQuant,
    QConv2d,
    calibrate_ranges,
    fp32_state,
    is_qat_state,
    prepare_qat,
    quant_parameters,
    set_mode,
)
from paragonsr.deploy.qat_onnx import export_qat_onnx, read_qdq_scales

pytest.importorskip("onnxruntime")


def smooth_batch(rng: np.random.Generator, n: int = 4, size: int = 24) -> torch.Tensor:
    return torch.from_numpy(V.parity_inputs(rng, (n, 3, size, size), "image"))


def outlier_net(seed: int = 0) -> nn.Module:
    """Tiny x2 net whose first conv has one channel 100x louder than the rest (its consumer weights 100x smaller):
    the same function, but per-tensor min/max calibration gives the quiet channels a handful of levels. The last
    conv is scaled so outputs span about the image range."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.LeakyReLU(0.1),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.LeakyReLU(0.1),
        nn.Conv2d(8, 12, 3, padding=1),
        nn.PixelShuffle(2),
    )
    first, mid, last = (cast(nn.Conv2d, net[i]) for i in (0, 2, 4))
    with torch.no_grad():
        first.weight[0] *= 100
        cast(torch.Tensor, first.bias)[0] *= 100
        mid.weight[:, 0] /= 100
        last.weight *= 8
    net.scale = 2  # type: ignore[assignment]  # what the exporter writes into the file's metadata
    return net.eval()


def _psnr_vs(ref: list[np.ndarray], out: list[np.ndarray]) -> float:
    return float(np.mean([V.psnr(a.transpose(1, 2, 0), b.transpose(1, 2, 0)) for a, b in zip(ref, out)]))


def test_learned_scales_reach_the_qdq_file(tmp_path):
    rng = np.random.default_rng(0)
    model = prepare_qat(outlier_net(), smooth_batch(rng, 1))
    calibrate_ranges(model, [smooth_batch(rng)])
    with torch.no_grad():  # "learned" values that calibration would never give
        for i, p in enumerate(quant_parameters(model)):
            p.add_(0.05 * (i % 3) - 0.04)
    path = export_qat_onnx(model, tmp_path / "m_int8.onnx")
    read = read_qdq_scales(path)
    convs = [m for m in model.modules() if isinstance(m, QConv2d)]
    assert len(read["weight"]) == len(convs) == 3
    for got, conv in zip(read["weight"], convs):
        np.testing.assert_allclose(got, conv.wq.scale().detach().numpy(), rtol=1e-6)
    acts = [m for m in model.modules() if isinstance(m, ActQuant)]
    # conv2 takes LeakyReLU(conv1) (its own quantiser), conv3 likewise: 3 inputs + 3 outputs
    assert len(acts) == len(read["activation"]) == 6
    want = sorted(float(a.qparams()[0].detach()) for a in acts)
    np.testing.assert_allclose(sorted(float(s) for s in read["activation"]), want, rtol=1e-6)
    # The file computes what the fake-quant model computes (up to rounding ties: a step or two at most).
    x = smooth_batch(rng, 2, 17).numpy()
    with torch.no_grad():
        fake = model.eval()(torch.from_numpy(x)).numpy()
    int8 = V.onnx_runner(path)(x)
    step = float(acts[-1].qparams()[0].detach())
    assert np.abs(fake - int8).max() <= 2 * step + 1e-6
    # integer weights in the file: int8 initializers, biases int32
    import onnx

    inits = {i.name: i.data_type for i in onnx.load(str(path)).graph.initializer}
    assert (
        sum(t == onnx.TensorProto.INT8 and n.endswith("_quantized") for n, t in inits.items()) == 3
    )  # weights
    assert (
        sum(t == onnx.TensorProto.INT32 and n.endswith("_quantized") for n, t in inits.items()) == 3
    )  # biases


def _distil(
    student: nn.Module, teacher: nn.Module, batches: list[torch.Tensor], opt: torch.optim.Optimizer
) -> None:
    """60 Adam steps of L1 to the FP32 teacher's output through the fake-quant student."""
    for step in range(60):
        x = batches[step % len(batches)]
        with torch.no_grad():
            y = teacher(x)
        loss = (student(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_qat_raises_int8_score_where_ptq_fails(tmp_path):
    from paragonsr.deploy.onnx_export import export_onnx
    from paragonsr.deploy.quantize import quantize_int8

    rng = np.random.default_rng(1)
    teacher = outlier_net()
    train = [smooth_batch(rng, 8) for _ in range(4)]
    test = [smooth_batch(rng, 1, 32).numpy() for _ in range(4)]
    with torch.no_grad():
        ref = [teacher(torch.from_numpy(x)).numpy()[0] for x in test]

    fp32 = export_onnx(teacher, tmp_path / "fp32.onnx")
    ptq = quantize_int8(fp32, tmp_path / "ptq.onnx", [b[:1].numpy() for b in train])
    run_ptq = V.onnx_runner(ptq)
    ptq_db = _psnr_vs(ref, [run_ptq(x)[0] for x in test])

    student = prepare_qat(outlier_net(), train[0][:1])
    calibrate_ranges(student, train)
    start_db = _psnr_vs(ref, [student.eval()(torch.from_numpy(x)).detach().numpy()[0] for x in test])
    qparams = {id(p) for p in quant_parameters(student)}
    opt = torch.optim.Adam(
        [
            {"params": [p for p in student.parameters() if id(p) not in qparams], "lr": 1e-3},
            {"params": quant_parameters(student), "lr": 2e-2},
        ]
    )
    student.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and immune to a busy machine's spin-waits
    try:
        _distil(student, teacher, train, opt)
    finally:
        torch.set_num_threads(threads)
    qat = export_qat_onnx(student.eval(), tmp_path / "qat.onnx")
    run_qat = V.onnx_runner(qat)
    qat_db = _psnr_vs(ref, [run_qat(x)[0] for x in test])
    print(f"PTQ {ptq_db:.2f} dB, QAT before training {start_db:.2f} dB, after {qat_db:.2f} dB (vs FP32)")
    assert ptq_db < V.INT8_MIN_PSNR_VS_FP32, f"PTQ should fail here, got {ptq_db:.2f} dB"
    assert qat_db > start_db + 0.5, (start_db, qat_db)  # the training helps, not only the quantiser placement
    assert qat_db > ptq_db + 2.0, (ptq_db, qat_db)


def test_fp32_twin_state_and_key_detection():
    model = prepare_qat(outlier_net(), torch.rand(1, 3, 8, 8))
    state = model.state_dict()
    assert is_qat_state(state) and not is_qat_state(outlier_net().state_dict())
    twin = outlier_net(seed=5)
    twin.load_state_dict(fp32_state(state), strict=True)  # the twin is the same weights, no quantisers
    for k, v in twin.state_dict().items():
        assert torch.equal(v, state[k])
    set_mode(model, "off")
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))
    with pytest.raises(ValueError, match="mode must be"):
        set_mode(model, "int4")


def test_prepare_refuses_unfused_paragonsr2_and_keeps_mks_float():
    from paragonsr.archs import build_arch

    net: Any = build_arch("paragonsr2_nano", scale=2, num_feat=8, num_groups=1, num_blocks=1, hr_blocks=1)
    with pytest.raises(ValueError, match="fuse_for_release"):
        prepare_qat(net, torch.rand(1, 3, 8, 8))
    prepare_qat(net.fuse_for_release(), torch.rand(1, 3, 8, 8))
    assert not any(isinstance(m, QConv2d) for m in net.base_upsampler.modules())
    # fc1 -> dwconv: the dwconv takes fc1's quantised output, so it has no input quantiser of its own
    t = net.body[0].blocks[0].transformer
    assert t.dwconv.aq_in is None and t.fc1.aq_in is not None and t.fc2.aq_in is not None


def test_ptq_keeps_the_image_residual_add_float(tmp_path):
    import onnx

    from paragonsr.archs import build_arch
    from paragonsr.deploy.onnx_export import export_onnx
    from paragonsr.deploy.quantize import keep_float_scopes, quantize_int8

    torch.manual_seed(0)
    net: Any = build_arch("paragonsr2_nano", scale=2, num_feat=8, num_groups=1, num_blocks=1, hr_blocks=1)
    net.fuse_for_release()
    fp32 = export_onnx(net, tmp_path / "f.onnx")
    rng = np.random.default_rng(0)
    q = quantize_int8(
        fp32, tmp_path / "q.onnx", [smooth_batch(rng, 1).numpy()], keep_float=keep_float_scopes(net)
    )
    g = onnx.load(str(q)).graph
    producer = {o: n for n in g.node for o in n.output}
    last = producer[g.output[0].name]
    assert last.op_type == "Add"  # the image-residual add writes the output itself, in float
    assert all(producer[i].op_type != "DequantizeLinear" for i in last.input if i in producer and "base" in i)


def test_int8_gate_bounds_lpips_for_perceptual_models():
    hr = [np.full((12, 12, 3), 0.5, np.float32)]
    chw = hr[0].transpose(2, 0, 1)
    fp32, int8 = [chw + 0.01], [chw + 0.0101]

    def fake_lpips(a, b):  # a stand-in metric: the mean absolute difference
        return float(np.abs(a - b).mean())

    ok = V.check_int8(hr, fp32, int8, 2, lpips=fake_lpips)
    assert ok.passed and ok.extra["lpips_increase"] == pytest.approx(1e-4, abs=1e-6)
    bad = V.check_int8(hr, fp32, int8, 2, lpips=fake_lpips, max_lpips_increase=5e-5)
    assert not bad.passed and "LPIPS vs ground truth rises 0.0001" in bad.detail
    assert math.isclose(bad.value, ok.value)  # PSNR part unchanged: LPIPS alone refuses it


def test_export_gate_refuses_a_qat_model_that_loses_too_much(tmp_path):
    import json

    from paragonsr.deploy.release import ExportOptions, export_release

    rng = np.random.default_rng(2)
    twin: Any = outlier_net()
    twin.scale, twin.in_ch = 2, 3  # what export_release reads from registered archs
    qat = prepare_qat(outlier_net(), smooth_batch(rng, 1))
    calibrate_ranges(qat, [smooth_batch(rng)])
    last = [m for m in qat.modules() if isinstance(m, QConv2d)][-1].aq_out
    assert last is not None
    last.set_range(0.0, 0.02)  # a "learned" output range that clips almost everything
    images = [
        (f"im{i}", V.parity_inputs(rng, (1, 3, 64, 64), "image")[0].transpose(1, 2, 0)) for i in range(2)
    ]
    opts = ExportOptions(int8=True, lr_crop=24, sizes=((24, 20),), latency_size=0)
    res = export_release(twin, tmp_path, "m", images, options=opts, log=lambda s: None, qat_model=qat)
    assert not res.ok and "int8" not in res.artifacts and not (tmp_path / "m_int8.onnx").exists()
    gate = next(g for g in res.gates if g.name == "int8")
    assert not gate.passed and gate.extra["drop_db"] > 0.3 and "--force-int8" in res.refused[0]
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["int8_settings"]["calibration"] == "QAT (learned scales)"
    assert card["int8_settings"]["calibration_crops"] == 0


@pytest.mark.parametrize("name", ["default", "classic"])
def test_packaged_int8_matches_its_qat_checkpoint_and_fp32_twin(name, photo_crop):
    import hashlib
    import json

    from paragonsr.deploy.qat import load_qat_checkpoint
    from paragonsr.infer import default_model_path

    twin_path, int8_path = default_model_path(f"{name}.safetensors"), default_model_path(f"{name}_int8.onnx")
    qat_path = default_model_path(f"{name}_qat.safetensors")
    if twin_path is None or int8_path is None or qat_path is None:
        pytest.skip(f"this install has no packaged {name} INT8 files")
    manifest = json.loads((twin_path.parent / "manifest.json").read_text())
    steps = manifest[f"{name}_qat.safetensors"]["qat_steps"]
    # 0 QAT steps: the twin is the shipped FP32 model itself; fine-tuned: the QAT file's own weights are the twin
    want_twin = f"{name}.safetensors" if steps == 0 else f"{name}_qat.safetensors"
    assert manifest[f"{name}_int8.onnx"]["fp32_twin"] == want_twin
    assert manifest[f"{name}_qat.safetensors"]["fp32_twin"] == want_twin
    assert manifest[f"{name}_int8.onnx"]["gate"]["drop_db"] <= V.INT8_MAX_DROP_DB
    assert hashlib.sha256(int8_path.read_bytes()).hexdigest() == manifest[f"{name}_int8.onnx"]["sha256"]
    pair = load_qat_checkpoint(qat_path)
    assert pair is not None
    qat, twin = pair
    from paragonsr.checkpoint import load_state_dict

    shipped, _ = load_state_dict(twin_path)
    if steps == 0:  # the twin IS the shipped model
        assert all(torch.equal(v, shipped[k]) for k, v in twin.state_dict().items())
    else:  # a fine-tune of it: different weights, nearly the same output
        assert any(not torch.equal(v, shipped[k]) for k, v in twin.state_dict().items())
    # the learned weight scales of the checkpoint are the ones in the file
    scales = [m.wq.scale().detach().numpy() for m in qat.modules() if isinstance(m, QConv2d)]
    read = read_qdq_scales(int8_path)["weight"]
    assert len(read) == len(scales)
    for got in read:
        assert any(s.shape == got.shape and np.allclose(s, got, rtol=1e-6) for s in scales)
    lr = V.downscale(photo_crop, 2)
    fp32 = V.torch_runner(twin)(V._chw(lr))[0]
    int8 = V.onnx_runner(int8_path)(V._chw(lr))[0]
    assert V.psnr(fp32.transpose(1, 2, 0), int8.transpose(1, 2, 0)) >= 45.0
    if steps > 0:
        from paragonsr.checkpoint import load_model

        released = V.torch_runner(load_model(twin_path))(V._chw(lr))[0]
        assert V.psnr(released.transpose(1, 2, 0), fp32.transpose(1, 2, 0)) >= 45.0
