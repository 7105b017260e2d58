"""Adapter building blocks on hand-made arrays: retrieval, zero-shot scoring, probes, decoders,
the training loop and the results table. (Adapters on real synthetic data: test_downstream_adapters.)"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from chexficient.data import registry
from chexficient.data.builders.nih_cxr14 import BOX_CLASSES
from chexficient.data.builders.vindr_cxr import LOCAL_CLASSES
from chexficient.findings import FINDINGS
from downstream import linear_probe, metrics, report, retrieval, segmentation, training, zero_shot
from downstream.data import MissingFieldsError, Split
from downstream.report_decoder import ReportDecoder, beam_decode, greedy_decode
from downstream.unet import UNetDecoder


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_retrieval_perfect_embeddings_with_merged_duplicates():
    reports = ["a", "b", "a", "c"]  # images 0 and 2 share a report
    texts, inverse = metrics.merge_duplicates(reports)
    basis = np.eye(3)
    image_emb = basis[inverse] + 0.01 * np.arange(4)[:, None]
    out = retrieval.retrieval_metrics(retrieval.retrieval_ranks(_unit(image_emb), basis, inverse), (1, 5))
    assert out["i2t/R@1"] == 1.0 and out["i2t/mean_rank"] == 1.0
    assert out["t2i/R@1"] == 1.0 and out["t2i/mean_rank"] == 1.0


def test_retrieval_reversed_embeddings_rank_last():
    basis = np.eye(4)
    inverse = np.arange(4)
    out = retrieval.retrieval_metrics(retrieval.retrieval_ranks(-basis, basis, inverse), (1, 5))
    # every image is least similar to its own text: rank 4 of 4
    assert out["i2t/mean_rank"] == 4.0 and out["i2t/R@1"] == 0.0 and out["i2t/R@5"] == 1.0


def test_zero_shot_probability_is_softmax_of_prompt_pair():
    prompts = _unit(np.array([[[1.0, 0.0], [0.0, 1.0]]]))  # one finding: (positive, negative)
    images = _unit(np.array([[1.0, 0.2], [0.2, 1.0], [1.0, 1.0]]))
    p = zero_shot.probabilities(images, prompts, scale=3.0)[:, 0]
    sims = images @ prompts[0].T * 3.0
    np.testing.assert_allclose(p, np.exp(sims[:, 0]) / np.exp(sims).sum(1), rtol=1e-6)
    assert p[0] > 0.5 > p[1] and p[2] == pytest.approx(0.5)


# Today's CheXzero prompts of the standard findings, as the README's zero-shot numbers used them.
_STANDARD_PROMPTS = {
    "No Finding": ("No finding.", "No no finding."),
    "Enlarged Cardiomediastinum": ("Enlarged cardiomediastinum.", "No enlarged cardiomediastinum."),
    "Cardiomegaly": ("Cardiomegaly.", "No cardiomegaly."),
    "Lung Lesion": ("Lung lesion.", "No lung lesion."),
    "Lung Opacity": ("Lung opacity.", "No lung opacity."),
    "Edema": ("Edema.", "No edema."),
    "Consolidation": ("Consolidation.", "No consolidation."),
    "Pneumonia": ("Pneumonia.", "No pneumonia."),
    "Atelectasis": ("Atelectasis.", "No atelectasis."),
    "Pneumothorax": ("Pneumothorax.", "No pneumothorax."),
    "Pleural Effusion": ("Pleural effusion.", "No pleural effusion."),
    "Pleural Other": ("Pleural other.", "No pleural other."),
    "Fracture": ("Fracture.", "No fracture."),
    "Support Devices": ("Support devices.", "No support devices."),
}


def test_finding_prompts_keep_standard_texts_and_acronyms():
    assert set(_STANDARD_PROMPTS) == set(FINDINGS)
    for name, (positive, negative) in _STANDARD_PROMPTS.items():
        assert zero_shot.finding_prompts(name, zero_shot.PROMPTS) == ([positive], [negative])
    pair = [("{Finding} is present.", "No {finding}.")]
    assert zero_shot.finding_prompts("ARDS", pair) == (["ARDS is present."], ["No ARDS."])
    assert zero_shot.finding_prompts("COVID-19 pneumonia", pair) == (
        ["COVID-19 pneumonia is present."], ["No COVID-19 pneumonia."])
    assert zero_shot.finding_prompts("pleural effusion with ARDS", pair) == (
        ["Pleural effusion with ARDS is present."], ["No pleural effusion with ARDS."])


def test_auroc_summary_keys_means_and_rare_mean():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (200, 3))
    scores = np.stack([y[:, 0], 1 - y[:, 1], rng.random(200)], axis=1).astype(float)
    names = ["Edema", "Pneumonia", "Fracture"]  # Pneumonia and Fracture are rare; Edema is top 5
    out = zero_shot.auroc_summary(y, scores, names, n_resamples=50, seed=0)
    assert out["auroc/Edema"] == 1.0 and out["auroc/Pneumonia"] == 0.0
    assert out["auroc/mean"] == pytest.approx(np.mean([1.0, 0.0, out["auroc/Fracture"]]))
    assert out["auroc/mean_rare"] == pytest.approx(np.mean([0.0, out["auroc/Fracture"]]))
    assert out["auroc/mean_top5"] == 1.0
    assert out["auroc/mean/ci_low"] <= out["auroc/mean"] <= out["auroc/mean/ci_high"]
    assert out["n_findings_defined"] == 3.0
    assert out == zero_shot.auroc_summary(y, scores, names, n_resamples=50, seed=0)


def test_linear_probe_separable_and_single_class_columns():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    y = np.stack([(x[:, 0] > 0), np.zeros(120, bool)], axis=1).astype(np.int8)
    probe = linear_probe.LinearProbe().fit(x[:80], y[:80])
    scores = probe.predict_scores(x[80:])
    assert metrics.auroc(y[80:, 0], scores[:, 0]) > 0.97
    np.testing.assert_array_equal(scores[:, 1], 0.0)  # learned from one class: a constant
    as_bool = linear_probe.LinearProbe().fit(x[:80], y[:80].astype(bool)).predict_scores(x[80:])
    np.testing.assert_array_equal(as_bool, scores)


def test_linear_probe_refuses_record_labels_and_1d_targets():
    """Record labels (1/0/-1) made predict_proba[:, 1] the probability of class 0: AUROC ~0."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    record = np.where(x[:, 0] > .5, 1, np.where(x[:, 0] < -.5, 0, -1))
    with pytest.raises(ValueError, match=r"0/1 \(or bool\), got values \[-1\]"):
        linear_probe.LinearProbe().fit(x, record[:, None])
    with pytest.raises(ValueError, match=r"\[n, F\] = \[300, findings\], got shape \(300,\)"):
        linear_probe.LinearProbe().fit(x, record == 1)
    with pytest.raises(ValueError, match="got values"):
        linear_probe.LinearProbe().fit(x, np.full((300, 1), -1))  # one value, not 0/1


def test_target_masks_union_of_channels():
    masks = np.zeros((1, 2, 2, 3), np.uint8)
    masks[0, 0, 0, 0] = masks[0, 1, 1, 1] = masks[0, 0, 1, 2] = 1
    t = segmentation.target_masks(masks, {"lungs": (0, 1), "heart": (2,)})
    assert t.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(t[0, ..., 0], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(t[0, ..., 1], [[0, 1], [0, 0]])


def test_every_masked_builder_names_its_mask_channels(tmp_path):
    masked = 0
    for name in registry.builder_names():
        features = registry.get_builder(name, str(tmp_path)).info.features
        if "mask" in features:
            masked, mask = masked + 1, features["mask"]
            channels = segmentation.MaskChannels.of(name)
            assert len(channels.names) == (mask.shape[2] if len(mask.shape) == 3 else 1), name
    assert masked == 5  # synthetic_cxr, nih_cxr14, rsna_pneumonia, siim_acr_pneumothorax, vindr_cxr


def test_segmentation_targets_come_from_the_dataset():
    of = segmentation.MaskChannels.of
    assert list(of("synthetic_cxr/micro").targets({}).items()) == [  # decoder channel order
        ("heart", (2,)), ("lungs", (0, 1)), ("pathology", (3,))]
    assert of("nih_cxr14/frontal").targets({}) == {c: (i,) for i, c in enumerate(BOX_CLASSES)}
    assert of("vindr_cxr/frontal").targets({}) == {c: (i,) for i, c in enumerate(LOCAL_CLASSES)}
    assert of("siim_acr_pneumothorax").targets({}) == {"Pneumothorax": (0,)}
    assert of("rsna_pneumonia/frontal").targets({}) == {"Lung Opacity": (0,)}
    assert of("nih_cxr14").empty_means_unannotated and not of("vindr_cxr").empty_means_unannotated
    assert of("vindr_cxr").targets({"lesion": ("Nodule/Mass", "Other lesion"),
                                    "ptx": "Pneumothorax"}) == {"lesion": (15, 16), "ptx": (19,)}
    synthetic = {"lungs": ("left_lung", "right_lung"), "heart": ("heart",)}
    for dataset, targets in [("siim_acr_pneumothorax/frontal", synthetic),
                             ("nih_cxr14/frontal", {"lungs": (0, 1)}),  # numbers: refused
                             ("nih_cxr14/frontal", {"none": ()})]:
        first = of(dataset).names[0]
        with pytest.raises(MissingFieldsError, match=rf"segmentation.*{dataset}.*'{first}'"):
            of(dataset).targets(targets)


def test_annotated_keeps_images_with_a_pixel_in_the_targets_channels():
    masks = np.zeros((3, 4, 4, 2), np.uint8)
    masks[1, 0, 0, 1] = masks[2, 3, 3, 0] = 1
    split = Split("train", np.zeros((3, 4, 4, 1), np.float32), np.zeros((3, 14), np.int8),
                  ["", "", ""], ["a", "b", "c"], masks)
    assert segmentation.annotated(split, {"x": (0, 1)}, "d").ids == ["b", "c"]
    assert segmentation.annotated(split, {"x": (1,)}, "d").ids == ["b"]
    with pytest.raises(MissingFieldsError, match=r"no image of split 'train' of dataset 'd' "
                                                 r"\(of 1 read\)"):
        segmentation.annotated(split.take([0]), {"x": (0, 1)}, "d")


def test_minibatches_static_size_seeded_and_covering():
    arrays = {"x": np.arange(10)}
    batches = list(training.minibatches(arrays, 4, 5, seed=0))
    assert all(len(b["x"]) == 4 for b in batches)
    assert sorted(np.concatenate([b["x"] for b in batches[:2]])) == sorted(
        set(np.concatenate([b["x"] for b in batches[:2]])))  # no repeats within a pass
    again = list(training.minibatches(arrays, 4, 5, seed=0))
    assert all((a["x"] == b["x"]).all() for a, b in zip(batches, again))
    assert len(next(training.minibatches({"x": np.arange(3)}, 8, 1, seed=0))["x"]) == 3


def test_unet_decoder_learns_masks_from_feature_grids():
    """A decoder trained through `fit` segments held-out discs that one feature channel encodes."""
    rng = np.random.default_rng(0)
    n = 96
    yy, xx = np.mgrid[0:32, 0:32] + 0.5
    centre, radius = rng.uniform(8, 24, size=(n, 2)), rng.uniform(4, 10, size=n)
    masks = ((yy - centre[:, :1, None]) ** 2 + (xx - centre[:, 1:, None]) ** 2
             < radius[:, None, None] ** 2).astype(np.uint8)[..., None]
    occupancy = masks[..., 0].reshape(n, 8, 4, 8, 4).mean(axis=(2, 4))  # per 4x4 "patch"
    deep = rng.normal(size=(n, 8, 8, 8)).astype(np.float32)
    deep[..., 0] = 4 * occupancy - 2
    shallow = rng.normal(size=(n, 8, 8, 8)).astype(np.float32)
    decoder = UNetDecoder(feature_width=8, num_levels=2, out_channels=1, image_size=32, width=16,
                          rngs=nnx.Rngs(0))
    losses = training.fit(decoder, lambda m, b: segmentation.segmentation_loss(
        m([b["f0"], b["f1"]]), b["mask"]), {"f0": shallow[:64], "f1": deep[:64], "mask": masks[:64]},
        steps=100, batch_size=16, learning_rate=3e-3, seed=0)
    assert losses[-1] < 0.5 * losses[0]
    predict = training.predictor(decoder, lambda m, a, b: m([a, b]), 16)
    logits = predict(shallow[64:], deep[64:])
    assert logits.shape == (32, 32, 32, 1)
    assert metrics.dice_per_image(logits > 0, masks[64:]).mean() > 0.85


def test_unet_image_skip_draws_what_only_the_pixels_show():
    """Discs visible in the image but not in the (noise) feature grids: only the decoder with
    the image skip can segment them, at full resolution."""
    rng = np.random.default_rng(1)
    n, size = 96, 32
    yy, xx = np.mgrid[0:size, 0:size]
    centre, radius = rng.uniform(8, 24, size=(n, 2)), rng.uniform(3, 8, size=n)
    masks = ((yy - centre[:, :1, None]) ** 2 + (xx - centre[:, 1:, None]) ** 2
             < radius[:, None, None] ** 2).astype(np.uint8)[..., None]
    images = (2.0 * masks - 1 + 0.3 * rng.normal(size=masks.shape)).astype(np.float32)
    grids = [rng.normal(size=(n, 4, 4, 8)).astype(np.float32) for _ in range(2)]
    scores = {}
    for channels in (0, 1):
        decoder = UNetDecoder(feature_width=8, num_levels=2, out_channels=1, image_size=size,
                              width=16, image_channels=channels, grid_size=4, rngs=nnx.Rngs(0))
        assert len(decoder.image_stages) == (2 if channels else 0)  # 8 -> 16 -> 32
        decode = lambda m, a, b, im: m([a, b], im if m.image_channels else None)  # noqa: E731
        training.fit(decoder, lambda m, b: segmentation.segmentation_loss(
            decode(m, b["f0"], b["f1"], b["image"]), b["mask"]),
            {"f0": grids[0][:64], "f1": grids[1][:64], "image": images[:64], "mask": masks[:64]},
            steps=100, batch_size=16, learning_rate=3e-3, seed=0)
        logits = training.predictor(decoder, decode, 16)(grids[0][64:], grids[1][64:], images[64:])
        scores[channels] = metrics.dice_per_image(logits > 0, masks[64:]).mean()
    assert scores[1] > 0.9 and scores[0] < 0.6, scores
    with pytest.raises(ValueError, match="image_channels"):
        decoder(grids, None)


def _sequence_logprob(decoder, tokens, ids, eos):
    logp = jax.nn.log_softmax(decoder(tokens, ids[:, :-1]))
    picked = jnp.take_along_axis(logp, ids[:, 1:, None], axis=-1)[..., 0]
    alive = jnp.cumsum(ids[:, :-1] == eos, axis=1) == 0  # up to and including the first eos
    return np.asarray(jnp.sum(picked * alive, axis=1))


def test_beam_search_with_one_beam_is_greedy_and_wider_beams_score_higher():
    decoder = ReportDecoder(image_width=8, vocab_size=12, max_len=7, width=16, depth=1, heads=2,
                            rngs=nnx.Rngs(1))
    tokens = jax.random.normal(jax.random.key(0), (6, 5, 8))
    special = dict(bos=2, eos=3, pad=0)
    greedy = greedy_decode(decoder, tokens, **special)
    np.testing.assert_array_equal(beam_decode(decoder, tokens, beams=1, **special), greedy)
    wide = beam_decode(decoder, tokens, beams=4, length_penalty=0.0, **special)
    assert (wide[:, 0] == 2).all()
    assert np.all(_sequence_logprob(decoder, tokens, wide, 3)
                  >= _sequence_logprob(decoder, tokens, greedy, 3) - 1e-5)


def test_report_decoder_memorises_two_reports():
    """Teacher forcing through `fit` then greedy decoding reproduces what each image says."""
    from downstream.report_generation import teacher_forcing_loss

    targets = np.array([[2, 5, 6, 7, 3, 0, 0, 0], [2, 8, 9, 3, 0, 0, 0, 0]], np.int32)
    tokens = np.stack([np.full((4, 8), 1.0), np.full((4, 8), -1.0)]).astype(np.float32)
    decoder = ReportDecoder(image_width=8, vocab_size=10, max_len=8, width=32, depth=1, heads=2,
                            rngs=nnx.Rngs(0))
    training.fit(decoder, teacher_forcing_loss,
                 {"tokens": tokens, "ids": targets, "mask": targets != 0},
                 steps=150, batch_size=2, learning_rate=3e-3, seed=0)
    np.testing.assert_array_equal(greedy_decode(decoder, tokens, bos=2, eos=3, pad=0), targets)
    np.testing.assert_array_equal(
        beam_decode(decoder, tokens, beams=3, bos=2, eos=3, pad=0), targets)


def test_results_table_for_two_checkpoints():
    results = {"run_a": {"zero_shot": {"test/auroc/mean": 0.81234, "test/auroc/mean/ci_low": 0.7,
                                       "test/auroc/mean/ci_high": 0.9, "test/n": float("nan")}},
               "run_b": {"zero_shot": {"test/auroc/mean": 0.6},
                         "retrieval": {"test/i2t/R@1": 0.25, "test/n_empty_reports_skipped": 0.0},
                         "linear_probe": {"test/1%/auroc/mean": 0.55, "test/1%/auroc/mean/sd": 0.0312,
                                          "test/1%/draws": 3.0,
                                          "test/1%/n_findings_one_class_in_train": 22 / 3}}}
    errors = {"run_a": {"retrieval": "adapter 'retrieval' failed on checkpoint 'a': boom"}}
    md = report.to_markdown(results, errors, ["run_a", "run_b"],
                            ["zero_shot", "retrieval", "linear_probe"], "T")
    assert "| metric | run_a | run_b |" in md
    assert "| test/auroc/mean | 0.812 [0.700, 0.900] | 0.600 |" in md
    assert "| test/n | - | - |" in md
    assert "| test/i2t/R@1 | - | 0.250 |" in md
    assert "| test/1%/auroc/mean | - | 0.550 ± 0.031 |" in md
    assert "| test/1%/draws | - | 3 |" in md
    assert "| test/n_empty_reports_skipped | - | 0 |" in md  # a count, whatever its size
    assert "| test/1%/n_findings_one_class_in_train | - | 7.3 |" in md  # a mean over draws
    assert "ci_low" not in md and "/sd" not in md and "boom" in md
    data = json.loads(report.to_json(results, errors, {"columns": ["run_a", "run_b"]}))
    assert data["results"]["run_a"]["zero_shot"]["test/n"] is None
    assert data["errors"] == errors and data["not_applicable"] == {}


def test_results_list_adapters_that_do_not_apply_apart_from_errors():
    results = {"sup": {"zero_shot": {"test/auroc/mean": 0.8}}}
    skipped = {"sup": {"retrieval": "a supervised reference has no trained text tower"}}
    md = report.to_markdown(results, {}, ["sup"], ["zero_shot", "retrieval"], "T",
                            not_applicable=skipped)
    assert "## Not applicable\n\n- **sup** / retrieval: a supervised reference" in md
    assert "## Errors" not in md
    data = json.loads(report.to_json(results, {}, {"columns": ["sup"]}, skipped))
    assert data["not_applicable"] == skipped and data["errors"] == {}


def test_bench_config_presets_and_typed_overrides():
    from downstream.config import ADAPTERS, bench_config

    quick, full = bench_config("quick"), bench_config("full")
    assert tuple(quick.adapters) == tuple(full.adapters) == ADAPTERS
    assert quick.data.max_examples.train > 0 and full.data.max_examples.train == 0  # 0 = all
    custom = bench_config("quick,max_train=64,reference=false,n_resamples=7")
    assert custom.data.max_examples.train == 64 and custom.reference is False
    assert custom.zero_shot.bootstrap.n_resamples == 7
    with pytest.raises(ValueError, match="unknown bench preset 'huge'"):
        bench_config("huge")
    with pytest.raises(ValueError, match="unknown bench argument 'epochs'"):
        bench_config("quick,epochs=3")
    assert bench_config("quick,reference=no").reference is False
    assert bench_config("quick,reference=Yes").reference is True
    with pytest.raises(ValueError, match="reference='maybe': expected bool"):
        bench_config("quick,reference=maybe")  # not a silent False
    with pytest.raises(ValueError, match="unknown bench argument 'preset'"):
        bench_config("quick,preset=full")
