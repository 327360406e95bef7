"""TRL's SFTTrainer with the LM head applied only where the loss is taken, on CPU.

TRL 1.x computes the completion-only loss through a "fused" LM head that, off Triton devices,
projects *every* position onto the vocabulary (49k logits for each of ~450 prompt tokens of a
SmolLM2 sample) and zeroes the prompt positions afterwards. On a CPU that head is most of a
step. Here, on CPU, the model is asked for logits only at the positions where some row of the
batch has a label (``logits_to_keep``: answers sit at the end, and batches are grouped by
length, so that is a few dozen positions), through the model's own forward, so DDP (several
processes: `accelerate launch`) and mixed precision wrap it as they wrap TRL's call. The loss
is TRL's: the summed negative log-likelihood of the label tokens over ``num_items_in_batch``
(or their count), times the process count when tokens are averaged across devices; the logged
``entropy`` / ``mean_token_accuracy`` / ``num_tokens`` are the same quantities, gathered over
processes. Anything else (GPU, label smoothing, a custom loss, a model without
``logits_to_keep``) goes through TRL unchanged.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import TrainerCallback


def trainer_class():
    """The SFTTrainer subclass (built lazily: importing TRL is slow)."""
    from trl import SFTTrainer

    class LlmrecSFTTrainer(SFTTrainer):
        def _send_telemetry(self):
            """Nothing: TRL's trainer reports each run to the Hugging Face Hub unless the
            environment says otherwise, and llmrec makes no network call at run time."""

        def _compact_head(self, model, inputs: dict[str, Any]) -> bool:
            lm = causal_lm(self.accelerator.unwrap_model(model))
            return (
                self.compute_loss_func is None
                and self.label_smoother is None
                and self.args.loss_type == "nll"
                and not self.aux_loss_enabled
                and "labels" in inputs
                and "shift_labels" not in inputs
                and inputs["labels"].device.type == "cpu"
                and "logits_to_keep" in inspect.signature(lm.forward).parameters
                and plain_head(lm.config)
            )

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or not self._compact_head(model, inputs):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            loss, stats = compact_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # as TRL and Trainer: the count spans every process, and DDP averages the gradients
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            valid, entropy, correct = (self.accelerator.gather_for_metrics(t).sum() for t in stats)
            self._metrics[mode]["entropy"].append((entropy / valid).item() if valid > 0 else 0.0)
            self._metrics[mode]["mean_token_accuracy"].append((correct / valid).item() if valid > 0 else 0.0)
            if mode == "train":
                tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
                self._total_train_tokens += tokens // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

    return LlmrecSFTTrainer


# Config fields that change the logits after the head (softcapping, scales): TRL's head applies
# them, this one does not, so a model that has any goes through TRL.
_HEAD_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def plain_head(config) -> bool:
    """Whether the model's logits are its LM head's output, untransformed."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return all(getattr(text, name, None) is None for name in _HEAD_TRANSFORMS)


def causal_lm(model):
    """The causal LM inside a PEFT wrapper (its LoRA layers are injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def compact_loss(model, inputs: dict[str, Any], num_items_in_batch=None):
    """(loss, (label tokens, entropy sum, correct top-1 count)) with logits only at label positions.

    ``model`` is called as the Trainer holds it (a DDP or PEFT wrapper included), asked for the
    logits of the positions where any row predicts a label token.
    """
    import torch

    kwargs = {k: v for k, v in inputs.items() if k != "labels"}
    labels = inputs["labels"][:, 1:]
    positions = (labels != -100).any(0).nonzero().squeeze(-1)  # position t predicts token t + 1
    logits = model(**kwargs, use_cache=False, logits_to_keep=positions).logits
    labels = labels[:, positions]
    mask = labels != -100
    log_probs = logits[mask].float().log_softmax(-1)
    target = labels[mask]
    picked = log_probs.gather(-1, target[:, None]).squeeze(-1)
    count = mask.sum()
    loss = -picked.sum() / (torch.as_tensor(count if num_items_in_batch is None else num_items_in_batch).clamp(min=1))
    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum(-1).sum()
        correct = (log_probs.argmax(-1) == target).sum()
    return loss, (count, entropy, correct)


def time_limit(minutes: float) -> TrainerCallback:
    """A callback that ends training after ``minutes`` of wall-clock time in the training loop (the
    recipe's ``max_minutes``; evaluations and saves count, and a ``--resume`` starts the clock
    again). At the step it stops it asks for what the trainer does at the end of a run: a save,
    and an evaluation where the run evaluates (so that a best-checkpoint run can keep the last
    steps). Under several processes the main process's clock decides, so that all stop at the
    same step. ``.hit`` says whether it stopped the run."""
    import time

    import torch
    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):
        def __init__(self) -> None:
            self.started: float | None = None
            self.hit = False

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            over = time.perf_counter() - self.started >= minutes * 60
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                flag = torch.tensor([float(over)], device=args.device)
                torch.distributed.broadcast(flag, src=0)
                over = bool(flag.item())
            if over:
                self.hit = True
                control.should_training_stop = True
                control.should_save = args.save_strategy != "no"
                control.should_evaluate = args.eval_strategy != "no"
            return control

    return TimeLimit()
