"""The Hydra module (trans-tokenization, Remy et al. 2024): one transformer body, one embedding
table and one LM head per language.

The body is an ordinary Hugging Face causal LM (the source model); its own input embedding and
output head are the source language's table and head. Every other language adds a table and a
head (the rows an init strategy gave its own tokenizer). ``use(lang)`` puts a language's table
and head into the model, so the model is then that language's plain causal LM: training,
scoring and export all see an ordinary ``PreTrainedModel``. A tied source gives tied heads
(each language's head is its table's matrix); an untied one gives each language its own head.
``read_write`` embeds ids with one language's table and scores them with another's head, which
is how the model reads one language and writes another (``transfer.hydra.translate``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from transformers import PreTrainedModel

from transfer.errors import VocabTransferError
from transfer.source.heads import is_tied


class HydraError(VocabTransferError):
    """A Hydra model or request that cannot be served (a language without a table and head)."""


def unknown_language_message(language: str, languages: list[str], what: str = "language") -> str:
    return (f"{what} {language!r}: this Hydra model has no embedding table or LM head for it; "
            f"it has {', '.join(repr(lang) for lang in languages)}")


def tied_head(table: nn.Embedding) -> nn.Linear:
    """An output head whose weight *is* ``table``'s matrix (a tied model's head)."""
    head = nn.Linear(table.embedding_dim, table.num_embeddings, bias=False)
    head.weight = table.weight
    return head


def _module_name(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


class HydraModel(nn.Module):
    """One body (``lm``, a causal LM) and a table and head per language (``tables``/``heads``,
    keyed by language tag); ``source_language`` names the source model's own."""

    def __init__(self, lm: PreTrainedModel, source_language: str) -> None:
        super().__init__()
        head = lm.get_output_embeddings()
        table = lm.get_input_embeddings()
        if head is None or not isinstance(table, nn.Embedding):
            raise HydraError(f"a Hydra model needs a causal LM with an embedding table and an LM head "
                             f"({type(lm).__name__} has {type(table).__name__} and {type(head).__name__})")
        self.tied = is_tied(lm)
        self.source_language = source_language
        self.table_name = _module_name(lm, table)
        self.head_name = _module_name(lm, head)
        self.lm = lm
        self.tables = nn.ModuleDict({source_language: table})
        self.heads = nn.ModuleDict({source_language: head})
        self.active = source_language

    @property
    def languages(self) -> list[str]:
        return list(self.tables.keys())

    def add_language(self, language: str, table: nn.Embedding, head: nn.Module | None = None) -> None:
        """Give ``language`` its table and (untied models) its head; a tied model's head is the
        table's matrix."""
        if language in self.tables:
            raise HydraError(f"language {language!r} is listed twice: the Hydra model has a table for it already")
        if table.embedding_dim != self.tables[self.source_language].embedding_dim:
            raise HydraError(f"language {language!r}: table width {table.embedding_dim} differs from the body's "
                             f"{self.tables[self.source_language].embedding_dim}")
        if self.tied:
            head = tied_head(table)
        elif head is None:
            raise HydraError(f"language {language!r}: the source has an untied head, so the language needs its own")
        self.tables[language] = table
        self.heads[language] = head

    def check_language(self, language: str, what: str = "language") -> None:
        if language not in self.tables:
            raise HydraError(unknown_language_message(language, self.languages, what))

    def use(self, language: str) -> PreTrainedModel:
        """The body with ``language``'s table and head in place: that language's causal LM."""
        self.check_language(language)
        self.lm.set_input_embeddings(self.tables[language])
        self.lm.set_output_embeddings(self.heads[language])
        self.lm.config.vocab_size = self.tables[language].num_embeddings
        self.active = language
        return self.lm

    def body_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """The shared body's parameters (every parameter of ``lm`` but the table and head)."""
        own = {id(p) for m in (*self.tables.values(), *self.heads.values()) for p in m.parameters()}
        for name, param in self.lm.named_parameters():
            if id(param) not in own:
                yield name, param

    def body_state(self) -> dict[str, torch.Tensor]:
        """The body's tensors by their name in ``lm`` (the table's and head's left out)."""
        skip = (f"{self.table_name}.", f"{self.head_name}.")
        return {k: v for k, v in self.lm.state_dict().items() if not k.startswith(skip)}

    def language_state(self, language: str) -> dict[str, torch.Tensor]:
        """A language's table (``embedding.weight``) and, untied, its head (``head.*``)."""
        self.check_language(language)
        state = {"embedding.weight": self.tables[language].weight}
        if not self.tied:
            state.update({f"head.{k}": v for k, v in self.heads[language].state_dict().items()})
        return state

    def forward(self, input_ids: torch.Tensor, language: str) -> torch.Tensor:
        """Logits of ``language``'s ids through its own table and head."""
        return self.use(language)(input_ids=input_ids).logits

    def read_write(self, read_ids: torch.Tensor, read: str, write: str) -> torch.Tensor:
        """Logits over ``write``'s vocabulary of ids read with ``read``'s table."""
        self.check_language(read, "read language")
        lm = self.use(write)
        return lm(inputs_embeds=self.tables[read](read_ids)).logits
