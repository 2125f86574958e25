"""Generations for the model card: a few fixed prompts in the target language, answered
greedily by the exported model (issue #17: the card shows what the adapted model writes).

Run once per adapted model when it is published, after every evaluation, so no metric can
depend on it; greedy decoding and a forked RNG leave no trace in later random draws. An
instruct model (its tokenizer has a chat template) gets each prompt as a user turn, any
other causal model continues it as plain text. Masked LMs get no samples.
"""

from __future__ import annotations

from pathlib import Path

from transfer.publish.summary import GenerationSample

#: New tokens per sample: enough for a sentence, cheap on a CPU (3 x 30 steps of 135M).
SAMPLE_TOKENS = 30

#: Fixed prompts per target language (a question, a request, a sentence to continue),
#: English for any other language.
PROMPTS: dict[str, tuple[str, ...]] = {
    "de": ("Was ist die Hauptstadt von Deutschland?", "Erzähl mir etwas über das Meer.",
           "Im Anfang war das Wort"),
    "fr": ("Quelle est la capitale de la France ?", "Parle-moi de la mer.",
           "Au commencement était la Parole"),
    "es": ("¿Cuál es la capital de España?", "Háblame del mar.", "En el principio era el Verbo"),
    "sw": ("Mji mkuu wa Kenya ni upi?", "Niambie kuhusu bahari.", "Hapo mwanzo kulikuwako Neno"),
    "en": ("What is the capital of England?", "Tell me about the sea.", "In the beginning was the Word"),
}
MAX_SAMPLES = min(len(prompts) for prompts in PROMPTS.values())


def prompts_for(language: str) -> tuple[str, ...]:
    """The fixed prompts of ``language`` (its primary subtag: ``de-CH`` -> ``de``), else English."""
    return PROMPTS.get(language.split("-")[0].lower(), PROMPTS["en"])


def card_samples(model_dir: Path | str, language: str, count: int, *, device: str | None = None,
                 max_new_tokens: int = SAMPLE_TOKENS) -> tuple[GenerationSample, ...]:
    """Greedy generations of the model in ``model_dir`` for the first ``count`` prompts of
    ``language``; none for ``count`` 0 or a masked LM."""
    if count <= 0:
        return ()
    import gc

    from transfer.evaluate.generate import generate_text
    from transfer.source.loading import load_source
    from transfer.source.objective import model_objective

    model, tokenizer = load_source(str(model_dir))
    try:
        if model_objective(model) != "causal":
            return ()
        chat = bool(getattr(tokenizer, "chat_template", None))
        samples = []
        for prompt in prompts_for(language)[:count]:
            out = generate_text(model, tokenizer, prompt, chat=chat, max_new_tokens=max_new_tokens, device=device)
            samples.append(GenerationSample(prompt=prompt, text=out.text, chat=chat,
                                            stopped_at_eos=out.stopped_at_eos, max_new_tokens=max_new_tokens))
        return tuple(samples)
    finally:
        del model
        gc.collect()
