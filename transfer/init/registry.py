"""Strategy registry and the one entry point ``initialize``.

``initialize`` runs a strategy, then gives special tokens (by role) and byte tokens (by
byte value) the source rows, the same way for every strategy, so that comparisons
between strategies measure their real work (DESIGN, "Adding a strategy").
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Union

import torch

from transfer.errors import UnknownStrategyError, VocabTransferError
from transfer.init.base import Strategy, StrategyInputs, TargetEmbeddings
from transfer.tokenizer.special_tokens import (
    map_byte_tokens,
    map_special_tokens,
    special_token_roles,
)

# The kinds of data beyond the embeddings a strategy may need; ``transfer.init.resources``
# knows how the pipeline provides each one.
DATA_KINDS: frozenset[str] = frozenset({"helper", "parallel", "target_corpus", "vectors"})


#: A strategy's own rules on its parameter values, called with every parameter (defaults
#: filled in) as keywords; raises a ``VocabTransferError`` (or ValueError) naming the value.
ParamCheck = Callable[..., None]


@dataclass(frozen=True)
class RegisteredStrategy:
    """A strategy function, the data kinds (``DATA_KINDS``) it needs and the check of its
    parameter values (beyond their types, which come from the signature)."""

    fn: Strategy
    needs: frozenset[str]
    check: ParamCheck | None = None


_STRATEGIES: dict[str, RegisteredStrategy] = {}


class StrategyParameterError(VocabTransferError):
    """A strategy got a parameter it does not take."""


class StrategyOutputError(VocabTransferError):
    """A strategy returned matrices of the wrong shape or kind."""


def register(name: str, needs: Iterable[str] = (), check: ParamCheck | None = None
             ) -> Callable[[Strategy], Strategy]:
    """Decorator: make ``fn(inputs, **params) -> TargetEmbeddings`` available as ``name``,
    needing the data kinds ``needs`` (of ``DATA_KINDS``) besides the embeddings. ``check``
    (called with every parameter as keywords) holds the strategy's rules on values, the
    same function the strategy calls itself, so a value is refused before any stage runs."""
    kinds = frozenset(needs)
    unknown = sorted(kinds - DATA_KINDS)
    if unknown:
        raise ValueError(
            f"strategy {name!r} needs unknown data {unknown}; known kinds: {sorted(DATA_KINDS)}"
        )

    def decorator(fn: Strategy) -> Strategy:
        existing = _STRATEGIES.get(name)
        if existing is not None and existing.fn is not fn:
            qualname = getattr(existing.fn, "__module__", "?")
            raise ValueError(f"strategy name {name!r} is already registered by {qualname}")
        _STRATEGIES[name] = RegisteredStrategy(fn, kinds, check)
        return fn

    return decorator


def available_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def _registered(name: str) -> RegisteredStrategy:
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise UnknownStrategyError(
            f"unknown strategy {name!r}; available: {', '.join(available_strategies()) or '(none)'}"
        ) from None


def get_strategy(name: str) -> Strategy:
    return _registered(name).fn


def needs(name: str) -> frozenset[str]:
    """The kinds of data strategy ``name`` declared at registration ("parallel",
    "target_corpus", "vectors"); empty for a strategy that needs only the tokenizers."""
    return _registered(name).needs


def strategy_parameters(name: str) -> dict[str, Any]:
    """The keyword parameters a strategy takes, with their defaults."""
    signature = inspect.signature(get_strategy(name))
    return {
        p.name: p.default
        for p in list(signature.parameters.values())[1:]
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def check_strategy_params(name: str, params: dict[str, Any]) -> None:
    """Refuse keyword parameters that strategy ``name`` does not take, values of the wrong
    type (from the signature: a bool for an int, a string for a float, NaN or infinity) and
    values the strategy's registered check refuses. Cheap; run before any stage is built."""
    registered = _registered(name)
    signature = inspect.signature(registered.fn)
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    accepted = strategy_parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise StrategyParameterError(
            f"strategy {name!r} does not take {', '.join(unknown)}; "
            f"it takes: {', '.join(accepted) or '(no parameters)'}"
        )
    hints = _parameter_types(registered.fn, accepted)
    for key, value in params.items():
        problem = _type_problem(value, hints[key])
        if problem:
            raise StrategyParameterError(f"strategy {name!r}: parameter {key} {problem}, got {value!r}")
    if registered.check is None:
        return
    try:
        registered.check(**{**accepted, **params})
    except VocabTransferError as error:
        # the strategy's own error class (tests and callers match on it), the strategy named
        raise type(error)(f"strategy {name!r}: {error}") from error
    except (ValueError, TypeError) as error:
        raise StrategyParameterError(f"strategy {name!r}: {error}") from error


def _parameter_types(fn: Strategy, defaults: dict[str, Any]) -> dict[str, Any]:
    """Each parameter's annotation, or its default's type when annotations cannot be resolved."""
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):
        hints = {}
    return {
        key: hints.get(key, Any if default is None else type(default)) for key, default in defaults.items()
    }


def _type_problem(value: Any, expected: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``expected`` (None: it fits, or the
    annotation is not one of the plain kinds checked here)."""
    origin = typing.get_origin(expected)
    if origin is Literal:
        choices = typing.get_args(expected)
        if any(type(value) is type(choice) and value == choice for choice in choices):
            return None
        return f"must be one of {list(choices)}"
    if origin in (Union, types.UnionType):
        options = typing.get_args(expected)
        problems = [_type_problem(value, option) for option in options]
        return None if any(p is None for p in problems) else " or ".join(p for p in problems if p)
    if expected is type(None):
        return None if value is None else "must be None"
    if expected is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if expected is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        return None if math.isfinite(value) else "must be a finite number"
    if expected is str:
        return None if isinstance(value, str) else "must be a string"
    return None


def _check_output(name: str, inputs: StrategyInputs, result: TargetEmbeddings) -> None:
    n_target = len(inputs.target_tokenizer)
    source = inputs.source
    expected = (n_target, source.input.shape[1])
    if tuple(result.input.shape) != expected:
        raise StrategyOutputError(
            f"strategy {name!r} returned input {tuple(result.input.shape)}, expected {expected}"
        )
    if (result.output is None) != source.tied:
        raise StrategyOutputError(
            f"strategy {name!r} returned output={'None' if result.output is None else 'a matrix'} "
            f"for a {'tied' if source.tied else 'untied'} source head"
        )
    if result.output is not None and result.output.shape[0] != n_target:
        raise StrategyOutputError(
            f"strategy {name!r} returned {result.output.shape[0]} output rows, expected {n_target}"
        )
    if (result.output_bias is None) != (source.output_bias is None):
        raise StrategyOutputError(f"strategy {name!r} dropped or invented the output bias")
    if result.output_bias is not None and result.output_bias.shape != (n_target,):
        raise StrategyOutputError(
            f"strategy {name!r} returned bias {tuple(result.output_bias.shape)}, "
            f"expected ({n_target},)"
        )
    if len(result.report.labels) != n_target:
        raise StrategyOutputError(
            f"strategy {name!r} labelled {len(result.report.labels)} tokens, expected {n_target}"
        )


def _copy_rows(
    result: TargetEmbeddings, inputs: StrategyInputs, mapping: dict[int, int], label: str
) -> None:
    """Overwrite target rows with source rows in input, untied output and bias."""
    if not mapping:
        return
    target_index = torch.tensor(list(mapping), dtype=torch.long)
    source_index = torch.tensor(list(mapping.values()), dtype=torch.long)
    source = inputs.source
    with torch.no_grad():
        result.input[target_index] = source.input[source_index].to(result.input.dtype)
        if result.output is not None and source.output is not None:
            result.output[target_index] = source.output[source_index].to(result.output.dtype)
        if result.output_bias is not None and source.output_bias is not None:
            result.output_bias[target_index] = source.output_bias[source_index].to(
                result.output_bias.dtype
            )
    for idx in mapping:
        result.report.labels[idx] = label


def initialize(name: str, inputs: StrategyInputs, **params: Any) -> TargetEmbeddings:
    """Run strategy ``name``, then copy special-token rows (by role) and byte-token rows
    (by byte value) from the source, relabelling them "special" and "byte"."""
    strategy = get_strategy(name)
    check_strategy_params(name, params)
    result = strategy(inputs, **params)
    _check_output(name, inputs, result)

    n_source = inputs.source.input.shape[0]
    special = {
        t: s
        for t, s in map_special_tokens(inputs.source_tokenizer, inputs.target_tokenizer).items()
        if s < n_source
    }
    byte = {
        t: s
        for t, s in map_byte_tokens(inputs.source_tokenizer, inputs.target_tokenizer).items()
        if s < n_source
    }
    _copy_rows(result, inputs, byte, "byte")
    _copy_rows(result, inputs, special, "special")

    target_vocab = inputs.target_tokenizer.get_vocab()
    unmapped = sorted(
        content
        for content in set(special_token_roles(inputs.target_tokenizer).values())
        if target_vocab.get(content) not in special
    )
    result.report.notes.append(
        f"{len(special)} special tokens copied by role, {len(byte)} byte tokens by byte value"
    )
    if unmapped:
        result.report.notes.append(
            f"special tokens without a source counterpart kept the strategy's row: {unmapped}"
        )
    return result
