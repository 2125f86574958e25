"""Generation: the instruct model stays a chat model (issue #17). The chat template renders
a user turn, greedy chat generation stops at the end-of-turn token, sampling is fixed by its
seed, ``generate`` works from the command line, and the model card shows samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.tiny import ENGLISH_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
from transfer.evaluate.generate import (
    GenerationError,
    end_of_turn_ids,
    generate_text,
    prompt_ids,
    render_chat,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# SmolLM2's template, without its default system turn
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
PROMPT = "the dog sees the ball"


@pytest.fixture(scope="module")
def chat_pair():
    """A tiny random Llama (untied head) and a byte-level BPE tokenizer with SmolLM2's roles
    (eos ``<|im_end|>``) and chat template."""
    tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 400)
    tokenizer.chat_template = CHAT_TEMPLATE
    model = tiny_llama(len(tokenizer), tie=False, seed=3)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return model, tokenizer


def _greedy_gaps(model, tokenizer, ids: list[int], eos: int, steps: int) -> list[float]:
    """Per greedy step of the unbiased model: how far the end-of-turn logit is below the best."""
    gaps, sequence = [], list(ids)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([sequence])).logits[0, -1]
            gaps.append(float(logits.max() - logits[eos]))
            sequence.append(int(logits.argmax()))
    return gaps


def _with_eos_bias(model, eos: int, bias: float) -> torch.nn.Module:
    """The model with a bias on the end-of-turn logit (its head as a biased linear layer)."""
    import copy

    biased = copy.deepcopy(model)
    head = torch.nn.Linear(biased.lm_head.in_features, biased.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(biased.lm_head.weight)
        head.bias.zero_()
        head.bias[eos] = bias
    biased.lm_head = head
    return biased


def test_chat_template_renders_the_user_turn(chat_pair) -> None:
    _, tokenizer = chat_pair
    text = render_chat(tokenizer, PROMPT)
    assert text == f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n"
    ids = prompt_ids(tokenizer, PROMPT, chat=True)
    # the role markers are single special tokens, not spelled out in bytes
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_end|>")) == 1


def test_greedy_chat_generation_stops_at_the_end_of_turn_token(chat_pair) -> None:
    model, tokenizer = chat_pair
    eos = end_of_turn_ids(model, tokenizer)
    assert eos == (tokenizer.convert_tokens_to_ids("<|im_end|>"),)
    ids = prompt_ids(tokenizer, PROMPT, chat=True)
    unbiased = generate_text(model, tokenizer, PROMPT, chat=True, max_new_tokens=20)
    assert not unbiased.stopped_at_eos and len(unbiased.token_ids) == 20  # runs to the limit
    # bias the end-of-turn logit so that it first wins at step k > 1 of the greedy path: a
    # step whose gap is below every earlier one
    gaps = _greedy_gaps(model, tokenizer, ids, eos[0], 20)
    k = next(k for k in range(1, len(gaps)) if gaps[k] < min(gaps[:k]))
    bias = (gaps[k] + min(gaps[:k])) / 2
    out = generate_text(_with_eos_bias(model, eos[0], bias), tokenizer, PROMPT, chat=True, max_new_tokens=20)
    assert out.stopped_at_eos and out.token_ids[-1] == eos[0]
    assert len(out.token_ids) == k + 1
    assert out.token_ids[:-1] == unbiased.token_ids[:k]  # the same path up to the end of turn
    assert "<|im_end|>" not in out.text


@pytest.mark.slow
def test_smollm2_answers_a_chat_turn_and_stops(smollm2) -> None:
    model, tokenizer = smollm2  # the session's real model (tests/conftest.py)
    rendered = render_chat(tokenizer, "What is the capital of France?")
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")
    out = generate_text(model, tokenizer, "What is the capital of France?", chat=True, max_new_tokens=40)
    assert out.stopped_at_eos and out.token_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert "Paris" in out.text


def test_same_seed_same_text_and_the_callers_random_state_untouched(chat_pair) -> None:
    model, tokenizer = chat_pair

    def sampled(seed: int) -> tuple[int, ...]:
        return generate_text(model, tokenizer, PROMPT, max_new_tokens=16, sample=True, temperature=1.0,
                             top_p=0.95, seed=seed).token_ids

    first = sampled(1)
    assert sampled(1) == first
    assert sampled(2) != first
    assert first != generate_text(model, tokenizer, PROMPT, max_new_tokens=16).token_ids  # greedy differs
    # the draws come from a forked RNG: a later draw of the caller is the same as without it
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    sampled(7)
    assert torch.equal(torch.rand(3), expected)


def test_chat_without_a_template_is_refused(chat_pair) -> None:
    model, _ = chat_pair
    plain = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 400)
    assert not plain.chat_template
    with pytest.raises(GenerationError, match="no chat template"):
        generate_text(model, plain, PROMPT, chat=True)
    assert generate_text(model, plain, PROMPT, max_new_tokens=3).token_ids  # plain text still works


def test_generate_command_prints_the_new_text(tmp_path: Path, chat_pair, tiny_source: Path) -> None:
    from flows.cli import app
    from transfer.source.loading import load_source, save_model

    model, tokenizer = chat_pair
    folder = tmp_path / "tiny-chat"
    save_model(model, tokenizer, folder)
    runner = CliRunner()
    result = runner.invoke(app, ["generate", str(folder), "--prompt", PROMPT, "--chat", "--max-new-tokens", "6",
                                 "--sample", "--seed", "4", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lm, tok = load_source(str(folder))
    expected = generate_text(lm, tok, PROMPT, chat=True, max_new_tokens=6, sample=True, seed=4)
    assert expected.text and result.stdout == expected.text + "\n"
    assert PROMPT not in result.stdout  # the generated text only

    refused = runner.invoke(app, ["generate", str(tiny_source), "--prompt", PROMPT, "--chat"])
    assert refused.exit_code == 2 and "no chat template" in refused.output


def test_prompts_per_language_fall_back_to_english() -> None:
    from transfer.publish.samples import MAX_SAMPLES, PROMPTS, prompts_for

    assert prompts_for("de") == PROMPTS["de"] and prompts_for("de-CH") == PROMPTS["de"]
    assert prompts_for("xx") == PROMPTS["en"]
    assert MAX_SAMPLES == 3


def test_model_card_samples_section(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from transfer.pipeline import run_adaptation
    from transfer.publish.model_card import CARD_FILE
    from transfer.publish.samples import PROMPTS
    from transfer.settings.config import AdaptConfig

    def run(samples: int):
        cfg = AdaptConfig(
            source_model=str(tiny_source), target_language="de", target_bible=[], source_bible=[],
            target_files=[str(tiny_corpus)], vocab_size=350, train_steps=2, batch_size=2, block_size=16,
            eval_texts=8, dev_fraction=0.1, test_fraction=0.1, device="cpu", cache_dir=tmp_path / "cache",
            output_dir=tmp_path / f"models-{samples}", register_model=False, card_samples=samples, strategy="mean")
        result = run_adaptation(cfg)
        return result, (Path(result.model_dir) / CARD_FILE).read_text()

    with_samples, card = run(1)
    assert "## Sample generations" in card
    assert f"**Prompt:** {PROMPTS['de'][0]}" in card and PROMPTS["de"][1] not in card
    assert "plain text to continue" in card  # the tiny tokenizer has no chat template
    assert card.index("## Sample generations") < card.index("## Data and licences")

    without, card = run(0)
    assert "## Sample generations" not in card and "**Prompt:**" not in card
    # card_samples is in no stage key: the second run reuses every stage, metrics identical
    assert all(without.stages_cached.values())
    assert without.stage_keys == with_samples.stage_keys and without.scores == with_samples.scores
