"""SentencePiece (BPE) tokenizer for reports: fixed-length ids with a padding mask.

Trained on a dataset's training reports and stored beside the dataset, so that a text tower
and every evaluator speak the same vocabulary.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm
from absl import logging

from chexficient.io import write_atomic

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


DIGITS = "0123456789"


class Tokenizer:
    """Encodes reports to `[n, max_len]` int32 ids (bos ... eos, then pad=0) and a bool mask."""

    file_name = "tokenizer.model"
    """What a run or an exported model calls its copy (`model_proto`, written as is)."""

    def __init__(self, model_path: str | None = None, *, model_proto: bytes | None = None):
        if (model_path is None) == (model_proto is None):
            raise ValueError("give exactly one of model_path or model_proto")
        if model_proto is None:
            with open(model_path, "rb") as f:
                model_proto = f.read()
        self._proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def train(cls, texts: Iterable[str], model_prefix: str, vocab_size: int = 4000) -> Tokenizer:
        """Trains on `texts` and writes `<model_prefix>.model` atomically.

        The vocabulary shrinks, with a warning, when the corpus cannot fill `vocab_size`. The ten
        digits are always in it, so a measurement the corpus never wrote ("6.0 cm" where no
        report had a 0) still reads back whole.
        """
        corpus = [t for t in texts if t.strip()]
        if not corpus:
            raise ValueError(f"cannot train tokenizer {model_prefix!r}: the corpus has no text")
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus), model_writer=buffer, vocab_size=vocab_size,
            model_type="bpe", character_coverage=1.0, hard_vocab_limit=False,
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            input_sentence_size=1_000_000, shuffle_input_sentence=True, num_threads=1,
            required_chars=DIGITS, minloglevel=2)
        tok = cls(model_proto=buffer.getvalue())
        if tok.vocab_size < vocab_size:
            logging.warning("tokenizer %s: the corpus (%d texts) supports only %d pieces, "
                            "not the %d asked for", model_prefix, len(corpus), tok.vocab_size,
                            vocab_size)
        write_atomic(model_prefix + ".model", tok._proto)
        return tok

    @property
    def vocab_size(self) -> int:
        return self._sp.vocab_size()

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    def encode(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns ids int32 [n, max_len] and mask bool [n, max_len]; long texts keep eos."""
        if max_len < 2:
            raise ValueError(f"max_len must leave room for bos and eos, got {max_len}")
        pieces = self._sp.encode(list(texts))
        ids = np.full((len(pieces), max_len), PAD_ID, np.int32)
        for row, p in zip(ids, pieces):
            body = p[: max_len - 2]
            row[0] = BOS_ID
            row[1: len(body) + 1] = body
            row[len(body) + 1] = EOS_ID
        return ids, ids != PAD_ID

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Pieces per text, without bos and eos: what choosing `max_len` needs."""
        return np.array([len(p) for p in self._sp.encode(list(texts))], np.int64)

    def decode(self, ids: np.ndarray | Sequence[Sequence[int]]) -> list[str]:
        """Inverts `encode`: drops bos, eos and padding and joins the pieces."""
        special = (PAD_ID, BOS_ID, EOS_ID)
        return [self._sp.decode([int(i) for i in row if i not in special]) for row in ids]

    @property
    def model_proto(self) -> bytes:
        """The serialized SentencePiece model: what `Tokenizer(model_proto=...)` rebuilds."""
        return self._proto

    def __getstate__(self) -> dict:
        return {"proto": self._proto}

    def __setstate__(self, state: dict) -> None:
        self.__init__(model_proto=state["proto"])



def load_saved(folder: str):
    """The tokenizer a run or an exported model keeps in `folder` (SentencePiece, or a BERT
    checkpoint's WordPiece), None when it has none."""
    from chexficient.data.wordpiece import WordPieceTokenizer

    if os.path.exists(os.path.join(folder, Tokenizer.file_name)):
        return Tokenizer(os.path.join(folder, Tokenizer.file_name))
    if os.path.exists(os.path.join(folder, WordPieceTokenizer.file_name)):
        return WordPieceTokenizer.from_folder(folder)
    return None
