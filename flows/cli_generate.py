"""``vocab-transfer generate MODEL --prompt "..." [--chat]``: let a model write.

MODEL is an adapted model folder (``artifacts/models/<name>``), any local Hugging Face
folder, the packaged ``smollm2`` or a ``.gguf`` file, loaded by
``transfer.source.loading.load_source`` (never remote code). Greedy by default; ``--sample``
draws with a fixed ``--seed``, so a command gives the same text every time. ``--chat`` sends
the prompt as a user turn through the tokenizer's chat template and stops at the end-of-turn
token: the check that an instruct model stays a chat model after adaptation.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def generate(
    model: str = typer.Argument(..., help="An adapted model folder, a Hugging Face folder, 'smollm2' or a .gguf file."),
    prompt: str = typer.Option(..., "--prompt", help="Text to continue, or with --chat the user's message."),
    chat: bool = typer.Option(False, "--chat", help="Render the prompt as a user turn with the chat template; "
                                                    "stop at the end-of-turn token."),
    max_new_tokens: int = typer.Option(50, "--max-new-tokens", min=1, help="Most tokens to generate."),
    sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding."),
    temperature: float = typer.Option(1.0, help="Sampling temperature, > 0 (with --sample)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass in (0, 1] (with --sample)."),
    seed: int = typer.Option(0, min=0, help="Seed of the sampling draws: the same seed gives the same text."),
    device: str | None = typer.Option(None, help="'cpu' or 'cuda' (default: CUDA when present)."),
) -> None:
    """Generate text with a model (greedy unless --sample); prints the new text only."""
    from transfer.errors import VocabTransferError

    try:
        from transfer.evaluate.generate import generate_text
        from transfer.source.loading import load_source

        with err_console.status(f"loading {escape(model)}"):
            lm, tokenizer = load_source(model)
        out = generate_text(lm, tokenizer, prompt, chat=chat, max_new_tokens=max_new_tokens, sample=sample,
                            temperature=temperature, top_p=top_p, seed=seed, device=device)
    except VocabTransferError as error:
        err_console.print("[red]error:[/] " + escape(str(error)), soft_wrap=True)
        raise typer.Exit(code=2) from error
    # plain print: the text as generated, no rich markup or wrapping applied to it
    print(out.text)
    if chat and not out.stopped_at_eos:
        err_console.print(f"[yellow]note:[/] no end-of-turn token within {max_new_tokens} tokens")
