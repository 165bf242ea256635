"""Sanity of the hidden ground truth: physics-like monotonicity, accelerators, RAM, heterogeneity."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from edgesel_tools.sim.catalog import model_features, model_zoo, resolve_model
from edgesel_tools.sim.devices import device_static_features, device_table, resolve_device
from edgesel_tools.sim.ground_truth import PATH_ACCEL, PATH_CPU, GroundTruth, QoEParams
from edgesel_tools.sim.scenario import build_stream, load_scenario

ALL_DEVICES = list(device_table().values())


def truth(models: list[str], devices=None, hidden_noise: float = 0.0) -> GroundTruth:
    ms = [resolve_model(m) for m in models]
    return GroundTruth(
        list(devices or ALL_DEVICES), ms, QoEParams(), np.random.default_rng(0), hidden_noise, hidden_noise
    )


def test_bigger_models_are_slower_on_every_device():
    chain = [
        "resnet18",
        "resnet34",
        "resnet50:IMAGENET1K_V2",
        "resnet101:IMAGENET1K_V2",
        "resnet152:IMAGENET1K_V2",
    ]
    gt = truth(chain)
    assert np.all(np.diff(gt.latency_ms, axis=1) > 0)
    effnets = ["efficientnet_b0", "efficientnet_b3", "efficientnet_b5", "efficientnet_b7"]
    assert np.all(np.diff(truth(effnets).latency_ms, axis=1) > 0)
    # and a tiny model beats a big one everywhere, even with the hidden per-device noise
    gt = truth(["mobilenet_v3_small", "convnext_base"], hidden_noise=0.15)
    assert np.all(gt.latency_ms[:, 0] * 5 < gt.latency_ms[:, 1])


def test_int8_is_much_faster_on_int8_accelerators_and_somewhat_on_cpus():
    gt = truth(["resnet50:IMAGENET1K_V1", "resnet50_int8:IMAGENET1K_FBGEMM_V1"])
    for i, d in enumerate(ALL_DEVICES):
        speedup = gt.latency_ms[i, 0] / gt.latency_ms[i, 1]
        if d.accel is not None and gt.path[i, 1] == PATH_ACCEL:
            # float runs on the GPU (Jetson) or at fp16 on the same engine (Neural Engine): smaller gap
            float_offloaded = d.cuda_gpu_gmacs > 0 or d.accel.runs_float
            assert speedup > (1.5 if float_offloaded else 5), d.name
        else:
            assert gt.path[i, 1] == PATH_CPU or d.cuda_gpu_gmacs > 0
            assert speedup > 1.2, d.name
    for name in ("coral_dev_board", "pixel_4", "jetson_xavier_nx"):
        i = [d.name for d in ALL_DEVICES].index(name)
        assert gt.path[i, 1] == PATH_ACCEL
    # an Edge TPU cannot run float: a float model stays on the slow CPU
    coral = [d.name for d in ALL_DEVICES].index("coral_dev_board")
    assert gt.path[coral, 0] == PATH_CPU and gt.latency_ms[coral, 0] > 20 * gt.latency_ms[coral, 1]


def test_models_that_do_not_fit_fail_with_minimum_qoe():
    devices = [resolve_device("raspberry_pi_3b_plus"), resolve_device("jetson_orin_nano_8gb")]
    gt = truth(["vit_l_16:IMAGENET1K_V1", "mobilenet_v3_small"], devices)
    dev = np.array([0, 1])
    zero = np.zeros(2)
    fits = gt.fits(dev, zero)
    assert fits.tolist() == [[False, True], [True, True]]
    prefs = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # a user who only cares about accuracy
    q = gt.expected_qoe(dev, zero, zero, np.ones(2), prefs)
    assert q[0, 0] == 0.0 and q[1, 0] > q[1, 1] > 0.0
    # background load takes memory: a borderline model fits an idle 2 GB phone but not a busy one
    phone = [resolve_device("galaxy_a10")]
    gt2 = truth(["efficientnet_v2_l"], phone)
    assert gt2.fits(np.array([0, 0]), np.array([0.0, 0.9])).ravel().tolist() == [True, False]


def test_qoe_is_in_unit_interval_and_rewards_are_noisy_versions(fleet_path):
    st = build_stream(load_scenario(fleet_path), rounds=2000)
    assert st.expected.min() >= 0.0 and st.expected.max() <= 1.0
    assert st.reward.min() >= 0.0 and st.reward.max() <= 1.0
    fit = st.fits
    err = (st.reward - st.expected)[fit]
    assert abs(err.mean()) < 0.02 and 0.02 < err.std() < 0.15
    assert np.all(st.reward[~fit] == 0.0)


def test_fleet_is_heterogeneous(fleet_path):
    """No single model is best for everyone: per device type the best model on average differs, and the
    oracle's most frequent pick covers well under half of the requests."""
    st = build_stream(load_scenario(fleet_path), rounds=8000)
    best, best_value = st.best_expected()
    top = collections.Counter(best.tolist()).most_common(1)[0][1]
    assert top / st.rounds < 0.35

    def mean_where_eligible(sel):
        n = st.eligible[sel].sum(axis=0)
        total = np.where(st.eligible[sel], st.expected[sel], 0.0).sum(axis=0)
        return np.where(n > 0, total / np.maximum(n, 1), -1.0)

    per_device_best = set()
    for i in range(len(st.scenario.devices)):
        per_device_best.add(int(np.argmax(mean_where_eligible(st.device_index == i))))
    assert len(per_device_best) >= 4
    # the best single model leaves a large gap to the oracle
    assert mean_where_eligible(slice(None)).max() < 0.95 * best_value.mean()


def test_features_are_fixed_range():
    for d in ALL_DEVICES:
        f = device_static_features(d)
        assert all(0.0 <= v <= 1.5 for v in f), d.name
    for m in model_zoo().values():
        f = model_features(m)
        assert all(-0.5 <= v <= 1.5 for v in f), m.arm_id


def test_model_ids_resolve_and_ambiguous_names_are_rejected():
    assert resolve_model("efficientnet_b0").gflops == pytest.approx(0.386)
    assert resolve_model("resnet50:IMAGENET1K_V2").top1 == pytest.approx(80.858)
    with pytest.raises(KeyError, match="several weights"):
        resolve_model("resnet50")
    with pytest.raises(KeyError, match="unknown model"):
        resolve_model("resnet9000")
    assert resolve_model("mobilenet_v2:IMAGENET1K_V1").num_params > 0  # blank in the CSV: estimated
