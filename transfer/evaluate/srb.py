"""SR-B: sentence retrieval on Bible verses (Glot500, ImaniGooghari et al. 2023; OFA, Liu et
al. 2024).

For each target-language verse, find the same verse in English among all candidate English
verses by the cosine similarity of sentence representations; report top-1 and top-10
accuracy, in both directions (target -> English and English -> target). A representation is
the mean of one layer's hidden states over the text's tokens (padding excluded), as in
Glot500 and OFA, which take layer 8 of 12 of their encoders. For a causal model we take the
middle layer by default too: the last layers of a decoder specialize in predicting the next
token, while the middle ones carry the most language-independent content (the "semantic
hub" finding of multilingual decoders); ``layer`` chooses another. Both languages are
encoded by the model being measured, with its own tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from transfer.errors import CorpusError

#: verses retrieved among, as in Glot500's SR-B (at most 500 per language)
MAX_VERSES = 500
TOP_K = (1, 10)


@dataclass(frozen=True)
class RetrievalResult:
    """Top-k accuracy of retrieving each verse's translation, both directions."""

    layer: int
    n_verses: int
    target_to_english: dict[str, float]
    english_to_target: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_layer(model: PreTrainedModel) -> int:
    """The middle layer (of ``num_hidden_layers``; hidden_states[0] is the embeddings)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return max(1, int(config.num_hidden_layers) // 2)


@torch.no_grad()
def sentence_embeddings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *,
                        layer: int, batch_size: int = 16, device: str | torch.device | None = None,
                        max_length: int = 256) -> torch.Tensor:
    """(len(texts), hidden) unit vectors: the mean of ``layer``'s hidden states over each
    text's tokens."""
    target = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(target).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    rows = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start:start + batch_size]), return_tensors="pt", padding=True,
                          truncation=True, max_length=max_length).to(target)
        hidden = model(**batch, output_hidden_states=True).hidden_states[layer].float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        rows.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
    return torch.cat(rows)


def top_k_accuracy(queries: torch.Tensor, candidates: torch.Tensor, ks: Sequence[int] = TOP_K) -> dict[str, float]:
    """Share of queries i whose candidate i is among their k most similar candidates (the
    rows are unit vectors, so the dot product is the cosine)."""
    scores = queries @ candidates.T
    correct = scores.diagonal().unsqueeze(1)
    # rank = how many candidates score higher than the right one (ties count against it)
    rank = (scores > correct).sum(1)
    return {f"top{k}": float((rank < k).float().mean()) for k in ks}


def sentence_retrieval(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target_texts: Sequence[str],
                       english_texts: Sequence[str], *, layer: int | None = None, batch_size: int = 16,
                       device: str | torch.device | None = None) -> RetrievalResult:
    """SR-B on aligned lists (``target_texts[i]`` translates ``english_texts[i]``)."""
    if len(target_texts) != len(english_texts) or not target_texts:
        raise CorpusError(f"SR-B needs two aligned, non-empty lists of verses; got {len(target_texts)} and "
                          f"{len(english_texts)}")
    layer = default_layer(model) if layer is None else layer
    target = sentence_embeddings(model, tokenizer, target_texts, layer=layer, batch_size=batch_size, device=device)
    english = sentence_embeddings(model, tokenizer, english_texts, layer=layer, batch_size=batch_size, device=device)
    return RetrievalResult(layer, len(target_texts), top_k_accuracy(target, english), top_k_accuracy(english, target))


def srb_verses(target_code: str, english_code: str = "k", *, split: str = "test",
               max_verses: int = MAX_VERSES) -> tuple[list[str], list[str]]:
    """Up to ``max_verses`` held-out verses present in both translations, aligned: the
    first ones in the Bible's order (target texts, English texts)."""
    from transfer.corpus.bible import verse_pairs
    from transfer.corpus.bible_languages import BIBLE_LANGUAGES

    pairs = verse_pairs(english_code, target_code, split)[:max_verses]
    if not pairs:
        language = BIBLE_LANGUAGES.get(target_code, target_code)
        raise CorpusError(f"SR-B: translation {target_code!r} ({language}) has no {split} verses in common with "
                          f"the English translation {english_code!r}")
    return [target for _, _, target in pairs], [english for _, english, _ in pairs]
