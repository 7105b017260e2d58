"""The report tokenizer: round trip, fixed-length ids and mask, special ids, vocabulary scaling."""

from __future__ import annotations

import logging
import os
import pickle

import numpy as np
import pytest

from chexficient.data import registry
from chexficient.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer


def _reports(micro, split: str) -> list[str]:
    source = registry.data_source(micro.name, split, micro.data_dir)
    return [source[i]["report"].decode() for i in range(len(source))]


def _collapse(text: str) -> str:
    return " ".join(text.split())


def test_round_trip_on_unseen_reports(micro):
    reports = _reports(micro, "validation")
    ids, _ = micro.tokenizer.encode(reports, max_len=512)
    assert (ids[:, -1] == PAD_ID).all(), "max_len=512 must hold every report whole"
    assert micro.tokenizer.decode(ids) == [_collapse(r) for r in reports]


def test_fixed_length_ids_and_mask(micro):
    texts = ["No pleural effusion.", "", "Heart size is normal. " * 40]
    ids, mask = micro.tokenizer.encode(texts, max_len=16)
    assert ids.dtype == np.int32 and ids.shape == (3, 16)
    assert mask.dtype == np.bool_ and (mask == (ids != PAD_ID)).all()
    assert (ids[:, 0] == BOS_ID).all()
    lengths = mask.sum(axis=1)
    assert lengths[1] == 2  # empty text: bos, eos
    assert lengths[2] == 16 and ids[2, -1] == EOS_ID  # truncated, still ends with eos
    assert ids[0, lengths[0] - 1] == EOS_ID and not mask[0, lengths[0]:].any()
    assert ((ids >= 0) & (ids < micro.tokenizer.vocab_size)).all()


def test_stored_beside_the_dataset_and_reloaded(micro):
    path = registry.tokenizer_path(micro.builder, micro.vocab_size)
    assert os.path.dirname(path) == micro.builder.data_dir and os.path.exists(path)
    assert not [f for f in os.listdir(micro.builder.data_dir) if f.startswith(".tmp-")]
    texts = _reports(micro, "test")[:8]
    reloaded = registry.load_tokenizer(micro.builder, micro.vocab_size)
    np.testing.assert_array_equal(reloaded.encode(texts, 64)[0],
                                  micro.tokenizer.encode(texts, 64)[0])


def test_pickles_for_worker_processes(micro):
    texts = _reports(micro, "test")[:8]
    clone = pickle.loads(pickle.dumps(micro.tokenizer))
    np.testing.assert_array_equal(clone.encode(texts, 64)[0], micro.tokenizer.encode(texts, 64)[0])


def test_small_corpus_scales_vocab_down_with_warning(tmp_path, caplog):
    corpus = ["Mild cardiomegaly.", "No pneumothorax.", "Small left pleural effusion."] * 20
    with caplog.at_level(logging.WARNING):
        tok = Tokenizer.train(corpus, str(tmp_path / "tok"), vocab_size=4000)
    assert 4 < tok.vocab_size < 4000
    assert any("not the 4000 asked for" in r.getMessage() for r in caplog.records)
    assert tok.decode(tok.encode(corpus[:3], 32)[0]) == corpus[:3]


def test_training_is_deterministic(tmp_path):
    corpus = [f"Finding {i % 7}: small effusion on the {'left' if i % 2 else 'right'}."
              for i in range(200)]
    a = Tokenizer.train(corpus, str(tmp_path / "a"), vocab_size=60)
    b = Tokenizer.train(corpus, str(tmp_path / "b"), vocab_size=60)
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()
    np.testing.assert_array_equal(a.encode(corpus, 24)[0], b.encode(corpus, 24)[0])


def test_empty_corpus_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no text"):
        Tokenizer.train(["", "  "], str(tmp_path / "tok"))
