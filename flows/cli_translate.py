"""``vocab-transfer translate MODEL --from en --to sw --text-file F [--out F2] [--references R]``:
a Hydra model (``adapt --hydra``) reads each line of F with the ``--from`` language's table and
writes it with the ``--to`` language's head (greedy; prompt and stopping rule in
``transfer/hydra/translate.py``). With ``--references`` (one line per line of F) it prints chrF.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

err_console = Console(stderr=True)


def translate(
    model: Path = typer.Argument(..., help="A Hydra model folder (artifacts/models/<source>-hydra-<langs>-<strategy>)."),
    source: str = typer.Option(..., "--from", help="Language of the text (its table reads it), e.g. 'en'."),
    target: str = typer.Option(..., "--to", help="Language to write (its head writes), e.g. 'sw'."),
    text_file: Path = typer.Option(..., "--text-file", help="UTF-8 text, one sentence per line."),
    out: Path | None = typer.Option(None, "--out", help="Write the translations here, one per line (default: print)."),
    references: Path | None = typer.Option(None, "--references", help="Reference translations, one per line of "
                                                                        "--text-file: print chrF (sacrebleu)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Most tokens written per line."),
) -> None:
    """Translate a text file with a Hydra model: read with one language's table, write with another's head."""
    from transfer.errors import VocabTransferError

    try:
        from transfer.hydra.store import load_hydra
        from transfer.hydra.translate import check_pair, chrf, translate_lines
        from transfer.settings.names import canonical_language_tag

        source, target = canonical_language_tag(source), canonical_language_tag(target)
        lines = _read_lines(text_file, "--text-file")
        refs = _read_lines(references, "--references") if references else None
        with err_console.status(f"loading {escape(str(model))}"):
            hydra = load_hydra(model)
        check_pair(hydra.model, source, target)
        if refs is not None and len(refs) != len(lines):
            raise VocabTransferError(f"--references {references}: {len(refs)} lines, but --text-file has "
                                     f"{len(lines)}; give one reference per line")
        with err_console.status(f"translating {len(lines)} lines {source} -> {target}"):
            translations = translate_lines(hydra.model, hydra.tokenizers, lines, source, target,
                                           max_new_tokens=max_new_tokens)
    except VocabTransferError as error:
        err_console.print("[red]error:[/] " + escape(str(error)), soft_wrap=True)
        raise typer.Exit(code=2) from error
    text = "".join(t + "\n" for t in translations)
    if out is None:
        print(text, end="")
    else:
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    if refs is not None:
        err_console.print(f"chrF {chrf(translations, refs):.2f} on {len(lines)} lines ({source} -> {target})")


def _read_lines(path: Path, option: str) -> list[str]:
    from transfer.errors import VocabTransferError

    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise VocabTransferError(f"{option} {path}: cannot read it as UTF-8 text ({error})") from error
