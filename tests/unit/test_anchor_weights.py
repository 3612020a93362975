"""encoder_edit.changed_word_ids and anchor_weights: the tokens ``anchor_concept`` weighs within the
text-encoder anchor (the words the pairs change, on both sides; special tokens never)."""

from __future__ import annotations

import torch

from vidunlearn.encoder_edit import anchor_weights, changed_word_ids
from vidunlearn.pairs import PromptPair as Pair


class WordTokenizer:
    """One token a word; 0 and 1 are the special [CLS] and [SEP]."""

    all_special_ids = [0, 1]

    def __init__(self) -> None:
        self.vocab = {"[CLS]": 0, "[SEP]": 1}

    def __call__(self, text: str, add_special_tokens: bool = True):
        ids = [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]

        class Out:
            input_ids = [0, *ids, 1] if add_special_tokens else ids
        return Out()


def test_the_changed_words_of_both_sides_weigh_the_concept_weight_and_the_rest_one():
    tok = WordTokenizer()
    pairs = [Pair(unsafe="a red circle moving up", safe="a green circle moving up"),
             Pair(unsafe="a red square on a dark background", safe="a blue square on a dark background")]
    ids = changed_word_ids(tok, pairs)
    assert ids == {tok.vocab["red"], tok.vocab["green"], tok.vocab["blue"]}
    prompt = torch.tensor(tok("a blue triangle moving up").input_ids)
    weights = anchor_weights(prompt, ids, 0.25)
    assert weights.tolist() == [1.0, 1.0, 0.25, 1.0, 1.0, 1.0, 1.0]   # [CLS] a blue triangle moving up [SEP]
    assert anchor_weights(prompt, ids, 1.0).tolist() == [1.0] * 7
