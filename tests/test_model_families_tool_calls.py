"""Tool use on the real DeepSeek-V3 and Qwen3 tokenizers (issue #18): the target keeps every
tool-call marker the chat template can write, and a tool-call conversation in the
template's own shape is one target token per marker, each mapped to the source's row.

DeepSeek-V3's template writes ``<｜tool▁calls▁begin｜>`` ... ``<｜tool▁sep｜>`` only for an
assistant message whose content is None, a branch ``apply_chat_template`` never takes (it
drops keys whose value is None), so the fixed conversations alone dropped these markers;
the template's literal text keeps them (``CHAT_TEMPLATE_TEXT``).
"""

from __future__ import annotations

from transformers.utils.chat_template_utils import _compile_jinja_template

from tests.families import family_case_of
from tokenizer_builds.added_tokens import (
    CHAT_TEMPLATE,
    CHAT_TEMPLATE_TEXT,
    CONVERSATIONS,
    rendered_chat_texts,
    select_added_tokens,
)
from transfer.tokenizer.special_tokens import map_special_tokens

_CALL = {"type": "function", "function": {"name": "wetter", "arguments": '{"stadt": "Bern"}'}}
#: Two parallel calls, two answers, in the OpenAI shape DeepSeek-V3's template expects.
TOOL_CONVERSATION = [
    {"role": "user", "content": "Wie ist das Wetter in Bern und Basel?"},
    {"role": "assistant", "content": None, "tool_calls": [
        _CALL, {**_CALL, "function": {"name": "wetter", "arguments": '{"stadt": "Basel"}'}}]},
    {"role": "tool", "content": "Sonnig."},
    {"role": "tool", "content": "Regen."},
    {"role": "assistant", "content": "Bern sonnig, Basel Regen."},
]


def _tool_markers(tokenizer) -> list[str]:
    return [token.content for token in tokenizer.added_tokens_decoder.values() if "tool" in token.content]


def test_deepseek_v3_keeps_every_tool_marker() -> None:
    case = family_case_of("deepseek_v3")
    source, target, selection = case.source_tokenizer, case.target_tokenizer, case.selection
    markers = _tool_markers(source)
    assert len(markers) == 9
    assert set(markers) <= set(selection.kept)
    # rendering reaches the tool outputs, only the template's text the tool calls
    calls = ["<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
             "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"]
    assert {token: selection.kept[token] for token in calls} == dict.fromkeys(calls, CHAT_TEMPLATE_TEXT)
    assert not any(call in text for text in rendered_chat_texts(source) for call in calls)
    assert selection.kept["<｜tool▁output▁begin｜>"] == CHAT_TEMPLATE

    # the template's own tool-call branch, rendered by its Jinja code with content None
    text = _compile_jinja_template(source.chat_template).render(
        messages=TOOL_CONVERSATION, bos_token=source.bos_token, add_generation_prompt=False)
    assert all(marker in text for marker in markers)
    ids = target(text, add_special_tokens=False).input_ids
    assert target.decode(ids) == text
    mapped = map_special_tokens(source, target)
    for marker in markers:
        target_id = target.convert_tokens_to_ids(marker)
        assert ids.count(target_id) == text.count(marker), marker  # one token per occurrence
        assert mapped[target_id] == source.convert_tokens_to_ids(marker)  # the source's row


def test_qwen3_keeps_its_tool_call_and_response_tags() -> None:
    case = family_case_of("qwen3")
    source, target, selection = case.source_tokenizer, case.target_tokenizer, case.selection
    tags = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
    assert {tag: selection.kept[tag] for tag in tags} == dict.fromkeys(tags, CHAT_TEMPLATE)
    conversation, options = CONVERSATIONS[3]  # the tool call with its answer
    assert any(call.get("tool_calls") for call in conversation)
    text = source.apply_chat_template(conversation, tokenize=False, **options)
    ids = target.apply_chat_template(conversation, **options)["input_ids"]
    assert target.decode(ids) == text
    mapped = map_special_tokens(source, target)
    for tag in tags:
        target_id = target.convert_tokens_to_ids(tag)
        assert ids.count(target_id) == text.count(tag) > 0, tag
        assert mapped[target_id] == source.convert_tokens_to_ids(tag)


def test_template_text_keeps_an_unrendered_branchs_token_unless_unparsable() -> None:
    """A token the template writes only on a branch no fixed conversation takes is kept by
    the template's text; a template Jinja cannot parse keeps nothing by its text (rendering
    and roles still decide) and raises nothing."""
    from tests.tiny import ENGLISH_SENTENCES, tiny_byte_bpe_tokenizer
    from tokenizer_builds.families import backend_json

    source = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 300,
                                     specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>", "<x>"])
    source.chat_template = ("{% for m in messages %}<|im_start|>{% if m.image %}<tool>{% endif %}"
                            "{{ m.content }}{% endfor %}")
    selection = select_added_tokens(source, backend_json(source))
    assert selection.kept["<tool>"] == CHAT_TEMPLATE_TEXT and "<x>" in selection.dropped
    source.chat_template = source.chat_template.replace("{% endfor %}", "")
    selection = select_added_tokens(source, backend_json(source))
    assert "<tool>" in selection.dropped and set(selection.kept.values()) == {"special role"}
