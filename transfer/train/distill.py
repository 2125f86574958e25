"""Cross-tokenizer distillation: approximate likelihood matching over aligned chunks.

The idea of ALM (approximate likelihood matching, Minixhofer et al. 2025, tokenkit): the
source model (the teacher, frozen, with its own tokenizer) and the adapted model (the
student, with the target tokenizer) read the same text. Both tokenizations are cut where
*both* have a token boundary at the same character offset (offsets mappings of the fast
tokenizers); between two such common cuts lies an aligned chunk, a span of text that each
model scores as a whole: the sum of the log-probabilities of its tokens. The student learns
to give every chunk the likelihood the teacher gives it.

The distance is the absolute difference of the two chunk log-likelihoods (nats), averaged
over chunks: ``mean_k |log p_student(chunk_k) - log p_teacher(chunk_k)|``. Why not ALM's
binarized f-divergence on (p, 1 - p): a chunk of a few tokens of a 49k vocabulary has a
probability near zero for both models, where the binarized divergence (and its gradient)
vanishes, while the log-likelihood gap is exactly what bits per byte measure. Why not the
square: the new embeddings start far from the teacher (gaps of tens of nats per chunk), and a
squared gap gives those few chunks gradients hundreds of times larger than the rest; the
absolute gap weighs every chunk alike and has a bounded gradient. It is zero exactly when
the two models agree on every chunk (identical model and tokenizer: every token boundary is
a common cut and the two computations are the same), positive otherwise, and its gradient
reaches only the student (the teacher runs under ``torch.no_grad``).

Where the text comes from: the trainer's packed blocks (same :class:`BlockOrder`, same
samples as the next-token objective). A block is split at its document separators and each
piece is decoded back to text (:func:`block_texts`); each text is a row, read by both models
after their own context token (the token the BPB evaluation puts before a text), so every
chunk, the first included, has context. Re-decoding needs no second pass over the corpus,
keeps memory-mapped token files and exact resume as they are, and the distillation term
sees exactly the text of the step's blocks. With ``mode="both"`` one student forward over
these rows gives both terms: the next-token loss is the student's mean token negative
log-likelihood on the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

import transfer.train.distributed as dist
from transfer.errors import TrainingError
from transfer.train.distributed import DistContext

DistillMode = Literal["distill", "both"]
IGNORE_INDEX = -100
_REPLACEMENT = "\ufffd"  # what a byte-level decoder gives for a character cut by a block edge


@dataclass
class Distillation:
    """The teacher side of the objective: frozen model, its tokenizer, how to mix the terms.

    ``mode="distill"``: the loss is ``weight * ALM``; ``mode="both"``: next-token loss
    ``+ weight * ALM``.
    """

    teacher: PreTrainedModel
    teacher_tokenizer: PreTrainedTokenizerBase
    mode: DistillMode = "both"
    weight: float = 1.0

    def check(self, student_tokenizer: PreTrainedTokenizerBase | None) -> None:
        if self.mode not in ("distill", "both"):
            raise TrainingError(f"distillation mode must be 'distill' or 'both', got {self.mode!r}")
        if not self.weight > 0:
            raise TrainingError(f"distill_weight must be > 0, got {self.weight}")
        for side, tok in (("student", student_tokenizer), ("teacher", self.teacher_tokenizer)):
            if tok is None:
                raise TrainingError(f"distillation needs the {side} tokenizer (tokenizer=)")
            if not getattr(tok, "is_fast", False):
                raise TrainingError(f"distillation needs a fast {side} tokenizer: chunks are aligned by the "
                                    f"offsets mapping, which only fast tokenizers give ({type(tok).__name__})")


# ---------------------------------------------------------------- alignment

def token_cuts(offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Character offsets where a tokenization has a boundary: after token ``i`` at its end,
    unless the next token starts before that end (byte-level tokens that split one character
    share its offsets: no boundary inside a character)."""
    cuts = []
    for i, (_, end) in enumerate(offsets):
        if i + 1 == len(offsets) or offsets[i + 1][0] >= end:
            cuts.append(int(end))
    return cuts


def chunk_ids(offsets: Sequence[tuple[int, int]], common: Sequence[int]) -> list[int]:
    """For each token, the index of the aligned chunk it belongs to (chunk ``k`` ends at
    ``common[k]``), or -1 for tokens after the last common cut (an unaligned tail)."""
    out, k = [], 0
    for _, end in offsets:
        while k < len(common) and end > common[k]:
            k += 1
        out.append(k if k < len(common) else -1)
    return out


def align_chunks(student_offsets: Sequence[tuple[int, int]],
                 teacher_offsets: Sequence[tuple[int, int]]) -> tuple[list[int], list[int], int]:
    """(student chunk index per token, teacher chunk index per token, number of chunks):
    the chunks lie between consecutive offsets where both tokenizations have a cut."""
    common = sorted(set(token_cuts(student_offsets)) & set(token_cuts(teacher_offsets)) - {0})
    return chunk_ids(student_offsets, common), chunk_ids(teacher_offsets, common), len(common)


# ---------------------------------------------------------------- text of blocks

def block_texts(rows: torch.Tensor, tokenizer: PreTrainedTokenizerBase, separator_id: int) -> list[str]:
    """The documents (or pieces of documents at block edges) of packed ``rows`` as text: each
    row split at ``separator_id``, each piece decoded without special tokens, characters cut
    by the block edge dropped, empty pieces skipped."""
    texts = []
    for row in rows.tolist():
        piece: list[int] = []
        for token in [*row, separator_id]:
            if token != separator_id:
                piece.append(token)
                continue
            if piece:
                text = tokenizer.decode(piece, skip_special_tokens=True).strip(_REPLACEMENT)
                if text.strip():
                    texts.append(text)
            piece = []
    return texts


# ---------------------------------------------------------------- batches

@dataclass
class SideBatch:
    """One model's rows: ids (context token first, right-padded), attention mask, and the
    aligned chunk of each position (-1: context token, padding, unaligned tail)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    chunks: torch.Tensor

    def to(self, device: torch.device) -> SideBatch:
        return SideBatch(self.input_ids.to(device), self.attention_mask.to(device), self.chunks.to(device))


@dataclass
class DistillBatch:
    """The same texts for student and teacher; chunk indices are global over the batch
    (chunk ``k`` of the batch is one span of one text, the same span on both sides)."""

    student: SideBatch
    teacher: SideBatch
    n_chunks: int
    n_student_tokens: int  # tokens the student's next-token term scores (context excluded)

    def to(self, device: torch.device) -> DistillBatch:
        return DistillBatch(self.student.to(device), self.teacher.to(device), self.n_chunks, self.n_student_tokens)


def _encode(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return encoded["input_ids"], [[(int(a), int(b)) for a, b in o] for o in encoded["offset_mapping"]]


def _side(ids: list[list[int]], chunks: list[list[int]], context_id: int, pad_id: int) -> SideBatch:
    width = 1 + max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    chunk = torch.full((len(ids), width), -1, dtype=torch.long)
    for r, (row, ch) in enumerate(zip(ids, chunks, strict=True)):
        input_ids[r, 0] = context_id
        input_ids[r, 1 : 1 + len(row)] = torch.tensor(row, dtype=torch.long)
        mask[r, : 1 + len(row)] = 1
        chunk[r, 1 : 1 + len(row)] = torch.tensor(ch, dtype=torch.long)
    return SideBatch(input_ids, mask, chunk)


def make_distill_batch(texts: list[str], student_tokenizer: PreTrainedTokenizerBase,
                       teacher_tokenizer: PreTrainedTokenizerBase) -> DistillBatch | None:
    """Tokenize ``texts`` on both sides and align their chunks; None when no text is left."""
    from transfer.evaluate.bpb import context_token_id

    s_ids, s_off = _encode(student_tokenizer, texts)
    t_ids, t_off = _encode(teacher_tokenizer, texts)
    keep = [i for i in range(len(texts)) if s_ids[i] and t_ids[i]]
    if not keep:
        return None
    s_chunks, t_chunks, base = [], [], 0
    for i in keep:
        s_ch, t_ch, n = align_chunks(s_off[i], t_off[i])
        s_chunks.append([c + base if c >= 0 else -1 for c in s_ch])
        t_chunks.append([c + base if c >= 0 else -1 for c in t_ch])
        base += n
    s_context, t_context = context_token_id(student_tokenizer), context_token_id(teacher_tokenizer)
    student = _side([s_ids[i] for i in keep], s_chunks, s_context, s_context)
    teacher = _side([t_ids[i] for i in keep], t_chunks, t_context, t_context)
    return DistillBatch(student, teacher, base, sum(len(s_ids[i]) for i in keep))


# ---------------------------------------------------------------- the loss

def _token_logprobs(model: torch.nn.Module, side: SideBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p of the token after each position given the tokens up to it, float32, shape
    (rows, width); the chunk index of that next token, same shape, -1 where unscored): the
    context token is never a target."""
    logits = model(input_ids=side.input_ids, attention_mask=side.attention_mask).logits
    # Shift the labels, not the logits (as loss_sum): position t predicts token t + 1; the
    # last position predicts nothing. Per-token cross-entropy in float32, without a
    # (rows, width, vocab) log-softmax copy.
    labels = F.pad(side.input_ids[:, 1:].masked_fill(side.attention_mask[:, 1:] == 0, IGNORE_INDEX),
                   (0, 1), value=IGNORE_INDEX)
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                          ignore_index=IGNORE_INDEX, reduction="none").view(labels.shape)
    return -nll, F.pad(side.chunks[:, 1:], (0, 1), value=-1)


def chunk_logliks(logprobs: torch.Tensor, chunks: torch.Tensor, n_chunks: int) -> torch.Tensor:
    """Sum of the token log-probabilities of every aligned chunk, shape (n_chunks,)."""
    scored = chunks >= 0
    return torch.zeros(n_chunks, dtype=logprobs.dtype, device=logprobs.device).index_add(
        0, chunks[scored], logprobs[scored])


@dataclass
class DistillSums:
    """Summed terms of one micro-batch (the trainer divides by the step's counts)."""

    chunk_gap: torch.Tensor  # sum over chunks of |log p_student - log p_teacher| (nats)
    student_nll: torch.Tensor  # summed next-token loss of the student on the same rows (nats)


def distill_sums(student: torch.nn.Module, teacher: torch.nn.Module, batch: DistillBatch) -> DistillSums:
    """The ALM term (and the student's next-token term) of ``batch``: gradients reach the
    student's trainable parameters only; the teacher runs under ``torch.no_grad``."""
    with torch.no_grad():
        t_logprobs, t_chunks = _token_logprobs(teacher, batch.teacher)
        teacher_ll = chunk_logliks(t_logprobs, t_chunks, batch.n_chunks)
    s_logprobs, s_chunks = _token_logprobs(student, batch.student)
    student_ll = chunk_logliks(s_logprobs, s_chunks, batch.n_chunks)
    return DistillSums((student_ll - teacher_ll).abs().sum(), -s_logprobs.sum())


def alm_loss(student: torch.nn.Module, teacher: torch.nn.Module, texts: list[str],
             student_tokenizer: PreTrainedTokenizerBase, teacher_tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Mean over aligned chunks of ``|log p_student(chunk) - log p_teacher(chunk)|`` on
    ``texts`` (nats per chunk; 0 when the texts give no aligned chunk)."""
    batch = make_distill_batch(texts, student_tokenizer, teacher_tokenizer)
    if batch is None or batch.n_chunks == 0:
        return torch.zeros(())
    device = next(student.parameters()).device
    sums = distill_sums(student, teacher, batch.to(device))
    return sums.chunk_gap / batch.n_chunks


# ---------------------------------------------------------------- one optimizer step

@dataclass
class StepTerms:
    """What one optimizer step of the distillation objective computed (all processes)."""

    loss: float  # the objective the step minimized
    alm: float  # mean |chunk log-likelihood gap| (nats per chunk)
    teacher_forward_passes: int  # teacher forwards (one per micro-batch with text, all processes)
    teacher_tokens: int  # tokens the teacher read (context tokens included)


def distill_step(student: torch.nn.Module, row_batches: list[torch.Tensor], distill: Distillation, *,
                 student_tokenizer: PreTrainedTokenizerBase, separator_id: int, device: torch.device,
                 autocast: AbstractContextManager, ctx: DistContext) -> StepTerms:
    """Accumulate the gradient of the step's objective over its micro-batches: ``weight *``
    the mean chunk gap over every aligned chunk of the step (plus, with ``mode="both"``,
    the mean next-token loss over every student token of the step), on every process.
    ``student`` is the trainer's model (under DDP: gradients sync on the last micro-batch
    only); ``autocast`` the run's (bf16 where it uses it); ``ctx`` its process context."""
    texts = [block_texts(rows, student_tokenizer, separator_id) for rows in row_batches]
    batches = [make_distill_batch(t, student_tokenizer, distill.teacher_tokenizer) if t else None for t in texts]
    counts = torch.tensor([float(sum(b.n_chunks for b in batches if b)),
                           float(sum(b.n_student_tokens for b in batches if b)),
                           float(sum(int(b.teacher.attention_mask.sum()) for b in batches if b)),
                           float(sum(1 for b in batches if b))], device=device)
    n_chunks, n_tokens, teacher_tokens, passes = dist.all_reduce_sum(counts, ctx).tolist()
    world = ctx.world_size
    last = max((i for i, b in enumerate(batches) if b is not None), default=-1)
    gap_total = torch.zeros((), device=device)
    objective_total = torch.zeros((), device=device)
    for micro, batch in enumerate(batches):
        if batch is None:  # a block of special tokens only: nothing to read
            continue
        with dist.no_sync(student, skip=micro != last), autocast:
            sums = distill_sums(student, distill.teacher, batch.to(device))
        term = distill.weight * sums.chunk_gap / max(n_chunks, 1.0)
        if distill.mode == "both":
            term = term + sums.student_nll / max(n_tokens, 1.0)
        # DDP averages gradients over processes: scale by the world size (as train_step)
        (term * world).backward()
        gap_total += sums.chunk_gap.detach()
        objective_total += term.detach()
    gap, objective = dist.all_reduce_sum(torch.stack([gap_total, objective_total]), ctx).tolist()
    return StepTerms(loss=objective, alm=gap / max(n_chunks, 1.0),
                     teacher_forward_passes=int(passes), teacher_tokens=int(teacher_tokens))
