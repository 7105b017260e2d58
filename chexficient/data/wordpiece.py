"""A BERT checkpoint's WordPiece tokenizer, in the role of our SentencePiece one.

Read from a Hugging Face folder (tokenizer.json, else vocab.txt with tokenizer_config.json's
`do_lower_case`) by the `tokenizers` library; encodes `[CLS] ... [SEP]` then [PAD], the way
BERT was trained. A run keeps it as tokenizer.json beside config.json, as it keeps a
SentencePiece model as tokenizer.model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import tokenizers


class WordPieceTokenizer:
    """Same interface as `chexficient.data.tokenizer.Tokenizer`; bos/eos are [CLS]/[SEP]."""

    file_name = "tokenizer.json"

    def __init__(self, json_text: str):
        self._json = json_text
        self._tok = tokenizers.Tokenizer.from_str(json_text)
        self._tok.no_padding()
        self._tok.no_truncation()
        missing = [t for t in ("[PAD]", "[CLS]", "[SEP]") if self._tok.token_to_id(t) is None]
        if missing:
            raise ValueError(f"WordPiece vocabulary lacks {missing}: not a BERT tokenizer")

    @classmethod
    def from_folder(cls, folder: str) -> WordPieceTokenizer:
        """The tokenizer of a Hugging Face BERT folder; an error names what it lacks."""
        path = os.path.join(folder, cls.file_name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return cls(f.read())
        vocab = os.path.join(folder, "vocab.txt")
        if not os.path.exists(vocab):
            raise FileNotFoundError(f"{folder} has no tokenizer: neither {cls.file_name} nor "
                                    "vocab.txt")
        settings = {}
        if os.path.exists(os.path.join(folder, "tokenizer_config.json")):
            with open(os.path.join(folder, "tokenizer_config.json")) as f:
                settings = json.load(f)
        lowercase = settings.get("do_lower_case", True)
        tok = tokenizers.BertWordPieceTokenizer(vocab, lowercase=lowercase,
                                                strip_accents=settings.get("strip_accents"))
        return cls(tok.to_str())

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    @property
    def pad_id(self) -> int:
        return self._tok.token_to_id("[PAD]")

    @property
    def bos_id(self) -> int:
        return self._tok.token_to_id("[CLS]")

    @property
    def eos_id(self) -> int:
        return self._tok.token_to_id("[SEP]")

    def encode(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """ids int32 [n, max_len] ([CLS] ... [SEP], then [PAD]) and mask bool [n, max_len];
        long texts are cut to keep [SEP]."""
        if max_len < 2:
            raise ValueError(f"max_len must leave room for [CLS] and [SEP], got {max_len}")
        ids = np.full((len(texts), max_len), self.pad_id, np.int32)
        mask = np.zeros((len(texts), max_len), bool)
        for row, encoding in enumerate(self._tok.encode_batch(list(texts))):
            pieces = encoding.ids[1:-1][: max_len - 2]  # the post-processor added CLS and SEP
            ids[row, : len(pieces) + 2] = [self.bos_id, *pieces, self.eos_id]
            mask[row, : len(pieces) + 2] = True
        return ids, mask

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Pieces per text, without [CLS] and [SEP]."""
        return np.array([len(e.ids) - 2 for e in self._tok.encode_batch(list(texts))], np.int64)

    def decode(self, ids: np.ndarray | Sequence[Sequence[int]]) -> list[str]:
        """Inverts `encode`, dropping the special tokens."""
        return self._tok.decode_batch([[int(i) for i in row] for row in ids],
                                      skip_special_tokens=True)

    @property
    def model_proto(self) -> bytes:
        """The tokenizer.json text, as bytes: what a run keeps."""
        return self._json.encode("utf-8")

    def __getstate__(self) -> dict:
        return {"json": self._json}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["json"])
