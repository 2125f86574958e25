"""Target tokenizer builds: family detection, conventions kept, errors, save/reload."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from tokenizer_builds import (
    BYTE_ALPHABET,
    TokenizerFamily,
    build_target_tokenizer,
    detect_family,
    save_tokenizer,
    train_byte_level_bpe,
)
from tokenizer_builds.byte_level_bpe import remap_token_ids
from transfer.errors import TokenizerBuildError
from transfer.tokenizer.fertility import compare_fertility

SOURCE_SPECIALS = ["<|endoftext|>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"

ENGLISH = [
    f"{who} {verb} {what}."
    for who, verb, what in itertools.product(
        ["The dog", "A cat", "My friend", "The teacher"],
        ["sees", "likes", "finds"],
        ["the ball", "a bird", "the street", "fresh bread"],
    )
]
GERMAN = [
    f"{who} {verb} {what}."
    for who, verb, what in itertools.product(
        [
            "Der Hund",
            "Die Katze",
            "Das Kind",
            "Der Bäcker",
            "Die Lehrerin",
            "Mein Freund",
            "Unsere Großmutter",
            "Ein Vogel",
        ],
        ["sieht", "mag", "findet", "sucht", "füttert", "grüßt"],
        [
            "den Ball",
            "die Straße",
            "das Brötchen",
            "einen Vogel",
            "große Äpfel",
            "die Brücke",
            "ein schönes Haus",
            "den Bäcker",
        ],
    )
]  # 384 sentences
TRICKY = [
    "Grüße aus Köln 😀👍🏽 — straße\n\nzweite Zeile\tmit Tab",
    "  führende   und   mehrfache Leerzeichen  ",
    "中文, ελληνικά, русский, עברית \r\n Ende\n",
    "\x00\x7f steuerzeichen \u200b nullbreit",
]
TARGET_VOCAB = 360  # the 384 sentences support about 383 tokens at min_frequency=1


def make_source() -> PreTrainedTokenizerFast:
    """A tiny GPT-2-like source: byte-level BPE, specials appended after the trained vocab
    (so their ids differ from the target's), a TemplateProcessing that adds <s> ... </s>."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(ENGLISH, trainer=trainer)
    backend.add_special_tokens(SOURCE_SPECIALS)
    backend.add_tokens(["<note>"])  # a non-special added token
    bos, eos = backend.token_to_id("<s>"), backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> $B:1 </s>:1",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<|endoftext|>",
        pad_token="<pad>",
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template=CHAT_TEMPLATE,
        model_max_length=128,
        clean_up_tokenization_spaces=False,
    )


@pytest.fixture(scope="module")
def source() -> PreTrainedTokenizerFast:
    return make_source()


@pytest.fixture(scope="module")
def target(source: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    # <note> is a non-special added token nothing needs: kept only because it is asked for.
    return build_target_tokenizer(source, GERMAN, TARGET_VOCAB, min_frequency=1,
                                  keep_tokens=["<note>"])


def component(tok: PreTrainedTokenizerFast, name: str) -> object:
    return json.loads(tok.backend_tokenizer.to_str())[name]


# -- family detection ---------------------------------------------------------------------


def test_detects_byte_level_bpe_from_wrapper_and_backend(source, target) -> None:
    assert detect_family(source) is TokenizerFamily.BYTE_LEVEL_BPE
    assert detect_family(source.backend_tokenizer) is TokenizerFamily.BYTE_LEVEL_BPE
    assert detect_family(target) is TokenizerFamily.BYTE_LEVEL_BPE


def test_detects_byte_level_inside_a_sequence_pre_tokenizer() -> None:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(), pre_tokenizers.ByteLevel(use_regex=False)]
    )
    assert detect_family(backend) is TokenizerFamily.BYTE_LEVEL_BPE


def test_detects_other_families() -> None:
    fallback = Tokenizer(models.BPE(byte_fallback=True))
    assert detect_family(fallback) is TokenizerFamily.BPE_BYTE_FALLBACK
    unigram = Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], unk_id=0))
    assert detect_family(unigram) is TokenizerFamily.UNIGRAM
    wordpiece = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    assert detect_family(wordpiece) is TokenizerFamily.WORDPIECE


def test_word_level_is_an_unknown_family() -> None:
    backend = Tokenizer(models.WordLevel({"<unk>": 0, "hallo": 1}, unk_token="<unk>"))
    wrapped = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(TokenizerBuildError, match="WordLevel"):
        detect_family(wrapped)
    with pytest.raises(TokenizerBuildError, match="WordLevel"):
        build_target_tokenizer(wrapped, GERMAN, TARGET_VOCAB)


def test_bpe_without_byte_handling_is_rejected() -> None:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(TokenizerBuildError, match="neither a ByteLevel"):
        detect_family(backend)


def test_every_known_family_dispatches_to_its_builder() -> None:
    backend = Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], unk_id=0))
    wrapped = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    built = build_target_tokenizer(wrapped, GERMAN, TARGET_VOCAB)
    assert detect_family(built) is TokenizerFamily.UNIGRAM and len(built) <= TARGET_VOCAB


# -- conventions kept ---------------------------------------------------------------------


def test_special_tokens_keep_strings_order_roles_at_first_ids(source, target) -> None:
    source_specials = [
        token.content for _, token in sorted(source.added_tokens_decoder.items()) if token.special
    ]
    assert source_specials == SOURCE_SPECIALS
    assert target.convert_ids_to_tokens(list(range(len(SOURCE_SPECIALS)))) == SOURCE_SPECIALS
    assert all(target.added_tokens_decoder[i].special for i in range(len(SOURCE_SPECIALS)))
    assert target.special_tokens_map == source.special_tokens_map
    assert target.extra_special_tokens == ["<|im_start|>", "<|im_end|>"]
    assert target.chat_template == CHAT_TEMPLATE
    assert target.model_max_length == 128
    assert target.clean_up_tokenization_spaces is False
    assert target.add_bos_token == source.add_bos_token


def test_non_special_added_tokens_stay_non_special(target) -> None:
    note_id = target.convert_tokens_to_ids("<note>")
    assert note_id >= len(SOURCE_SPECIALS)
    assert target.added_tokens_decoder[note_id].special is False
    assert target.tokenize("a <note> b").count("<note>") == 1


def test_vocab_size_and_full_byte_alphabet(target) -> None:
    # vocab_size counts learned tokens and the byte alphabet; kept added tokens are on top
    assert len(target) == TARGET_VOCAB + len(target.added_tokens_decoder)
    vocab = target.get_vocab()
    assert len(BYTE_ALPHABET) == 256
    assert all(symbol in vocab for symbol in BYTE_ALPHABET)


def test_pipeline_components_copied_from_source(source, target) -> None:
    for name in ("normalizer", "pre_tokenizer", "decoder"):
        assert component(target, name) == component(source, name)
    source_model = component(source, "model")
    target_model = component(target, "model")
    for flag in (
        "type",
        "dropout",
        "unk_token",
        "continuing_subword_prefix",
        "fuse_unk",
        "byte_fallback",
        "ignore_merges",
    ):
        assert target_model[flag] == source_model[flag]


def test_post_processor_ids_remapped_by_string(source, target) -> None:
    assert source.bos_token_id != target.bos_token_id  # else remapping goes untested
    ids = target("Der Hund").input_ids
    assert ids[0] == target.bos_token_id == target.convert_tokens_to_ids("<s>")
    assert ids[-1] == target.eos_token_id == target.convert_tokens_to_ids("</s>")
    specials = component(target, "post_processor")["special_tokens"]
    assert specials["<s>"]["ids"] == [target.bos_token_id]
    assert specials["</s>"]["ids"] == [target.eos_token_id]


def test_remap_covers_roberta_style_processors() -> None:
    processor = {"type": "RobertaProcessing", "sep": ["</s>", 7], "cls": ["<s>", 9]}
    remapped = remap_token_ids(processor, {"<s>": 0, "</s>": 2})
    assert remapped == {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0]}
    with pytest.raises(TokenizerBuildError, match="<s>"):
        remap_token_ids(processor, {"</s>": 2})


@pytest.mark.parametrize("text", GERMAN[:3] + TRICKY)
def test_lossless_round_trip(target, text: str) -> None:
    ids = target(text, add_special_tokens=False).input_ids
    assert target.decode(ids) == text


def test_german_is_tokenized_more_compactly_than_by_source(source, target) -> None:
    fertility = compare_fertility(source, target, GERMAN)
    assert fertility["target"].tokens_per_word < fertility["source"].tokens_per_word


def test_generator_corpus_loses_no_text(source, target) -> None:
    from_generator = build_target_tokenizer(
        source, (text for text in GERMAN), TARGET_VOCAB, min_frequency=1, keep_tokens=["<note>"]
    )
    assert from_generator.get_vocab() == target.get_vocab()


def test_direct_family_trainer_matches_builder(source, target) -> None:
    direct = train_byte_level_bpe(source, GERMAN, TARGET_VOCAB, min_frequency=1,
                                  keep_tokens=["<note>"])
    assert direct.get_vocab() == target.get_vocab()


# -- errors before training ---------------------------------------------------------------


def test_vocab_size_too_small_names_the_minimum(source) -> None:
    minimum = 256 + 1  # bytes + one merge (special and added tokens come on top)
    with pytest.raises(TokenizerBuildError, match=f"vocab_size=100 .*minimum is {minimum}"):
        build_target_tokenizer(source, GERMAN, 100)
    build_target_tokenizer(source, GERMAN[:20], minimum, min_frequency=1)  # the minimum works


def test_empty_corpus(source) -> None:
    with pytest.raises(TokenizerBuildError, match="corpus is empty"):
        build_target_tokenizer(source, [], TARGET_VOCAB)
    with pytest.raises(TokenizerBuildError, match="corpus is empty"):
        build_target_tokenizer(source, iter(()), TARGET_VOCAB)


def test_bad_min_frequency(source) -> None:
    with pytest.raises(TokenizerBuildError, match="min_frequency"):
        build_target_tokenizer(source, GERMAN, TARGET_VOCAB, min_frequency=0)


# -- save / reload ------------------------------------------------------------------------


def test_save_and_reload_with_auto_tokenizer(target, tmp_path: Path) -> None:
    out_dir = tmp_path / "tokenizer"
    save_tokenizer(target, out_dir)
    save_tokenizer(target, out_dir)  # replacing an existing folder works too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer"]  # no temp left
    reloaded = AutoTokenizer.from_pretrained(out_dir)
    assert reloaded.get_vocab() == target.get_vocab()
    assert reloaded.special_tokens_map == target.special_tokens_map
    assert reloaded.extra_special_tokens == target.extra_special_tokens
    assert reloaded.chat_template == target.chat_template
    assert reloaded.model_max_length == target.model_max_length
    for text in GERMAN[:5] + TRICKY:
        assert reloaded(text).input_ids == target(text).input_ids
        assert reloaded.decode(reloaded(text).input_ids) == target.decode(target(text).input_ids)
    messages = [{"role": "user", "content": "Hallo"}]
    assert reloaded.apply_chat_template(messages) == target.apply_chat_template(messages)


# -- the real SmolLM2 tokenizer -----------------------------------------------------------


def bible_verses(limit: int, offset: int = 0) -> list[str]:
    from transfer.corpus.bible import bible_db_path

    with sqlite3.connect(bible_db_path()) as db:
        rows = db.execute(
            "SELECT vText FROM bible WHERE bbName = 'e' "
            "ORDER BY bNumber, cNumber, vNumber LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
    return [text for (text,) in rows]


@pytest.mark.slow
def test_smollm2_german_build_keeps_conventions(smollm2) -> None:
    _, smollm2 = smollm2  # the session's real model and tokenizer (tests/conftest.py)
    train, held_out = bible_verses(3000), bible_verses(300, offset=3000)
    started = time.perf_counter()
    german = build_target_tokenizer(smollm2, train, 2000)
    seconds = time.perf_counter() - started

    assert detect_family(smollm2) is TokenizerFamily.BYTE_LEVEL_BPE
    # 2000 learned + byte tokens; of SmolLM2's 17 added tokens only the three a role or
    # the chat template needs are kept, on top
    assert len(german) == 2003
    assert german.convert_ids_to_tokens([0, 1, 2]) == [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
    ]
    assert german.special_tokens_map == smollm2.special_tokens_map
    assert german.chat_template == smollm2.chat_template
    for name in ("normalizer", "pre_tokenizer", "decoder", "post_processor"):
        assert component(german, name) == component(smollm2, name)

    messages = [{"role": "user", "content": "Wer schuf die Erde?"}]
    german_chat = german.apply_chat_template(messages)["input_ids"]
    source_chat = smollm2.apply_chat_template(messages)["input_ids"]
    assert german.decode(german_chat) == smollm2.decode(source_chat)
    assert german_chat[0] == source_chat[0] == 1  # <|im_start|> keeps its id
    for text in held_out[:20] + TRICKY:
        assert german.decode(german(text, add_special_tokens=False).input_ids) == text

    fertility = compare_fertility(smollm2, german, held_out)
    print(f"\nSmolLM2 -> German 2k build: {seconds:.2f} s; fertility on 300 held-out verses:")
    for side, value in fertility.items():
        print(f"  {side}: {value.to_dict()}")
    assert fertility["target"].tokens_per_word < fertility["source"].tokens_per_word
    assert fertility["target"].bytes_per_token > fertility["source"].bytes_per_token
