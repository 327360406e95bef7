"""TRL's SFTTrainer with the LM head applied only where the loss is taken, on CPU.

TRL 1.x computes the completion-only loss through a "fused" LM head that, off Triton devices,
projects *every* position onto the vocabulary (49k logits for each of ~450 prompt tokens of a
SmolLM2 sample) and zeroes the prompt positions afterwards. On a CPU that head is most of a
step. Here, on CPU and in a single process, the backbone runs once and the head is applied to
the positions whose next-token label is not -100 only. The loss is TRL's: the summed negative
log-likelihood of those tokens over ``num_items_in_batch`` (or their count), and the logged
``entropy`` / ``mean_token_accuracy`` / ``num_tokens`` are the same quantities. Anything else
(GPU, several processes, label smoothing, a custom loss) goes through TRL unchanged.
"""

from __future__ import annotations

from typing import Any


def trainer_class():
    """The SFTTrainer subclass (built lazily: importing TRL is slow)."""
    from trl import SFTTrainer

    class LlmrecSFTTrainer(SFTTrainer):
        def _compact_head(self, model, inputs: dict[str, Any]) -> bool:
            return (
                self.compute_loss_func is None
                and self.label_smoother is None
                and self.args.loss_type == "nll"
                and not self.aux_loss_enabled
                and self.accelerator.num_processes == 1
                and "labels" in inputs
                and "shift_labels" not in inputs
                and inputs["labels"].device.type == "cpu"
                and plain_head(causal_lm(self.accelerator.unwrap_model(model)).config)
            )

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or not self._compact_head(model, inputs):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            loss, stats = compact_loss(self.accelerator.unwrap_model(model), inputs, num_items_in_batch,
                                       self.accelerator.autocast)  # fmt: skip
            valid, entropy, correct = stats
            self._metrics[mode]["entropy"].append(entropy / valid if valid else 0.0)
            self._metrics[mode]["mean_token_accuracy"].append(correct / valid if valid else 0.0)
            if mode == "train":
                self._total_train_tokens += int(inputs["attention_mask"].sum()) // self._tp_size
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


def compact_loss(model, inputs: dict[str, Any], num_items_in_batch=None, autocast=None):
    """(loss, (label tokens, entropy sum, correct top-1 count)) with the head at label positions only.

    ``autocast`` is the accelerator's context (mixed precision is applied by patching the model's
    forward, which this bypasses by calling the backbone itself).
    """
    import contextlib

    import torch

    lm = causal_lm(model)
    kwargs = {k: v for k, v in inputs.items() if k != "labels"}
    kwargs["use_cache"] = False
    labels = inputs["labels"][:, 1:]
    mask = labels != -100
    with autocast() if autocast else contextlib.nullcontext():
        hidden = lm.base_model(**kwargs).last_hidden_state[:, :-1]
        logits = lm.get_output_embeddings()(hidden[mask])
    log_probs = logits.float().log_softmax(-1)
    target = labels[mask]
    picked = log_probs.gather(-1, target[:, None]).squeeze(-1)
    count = mask.sum()
    loss = -picked.sum() / (torch.as_tensor(count if num_items_in_batch is None else num_items_in_batch).clamp(min=1))
    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum(-1).sum()
        correct = (log_probs.argmax(-1) == target).sum()
    return loss, (int(count), float(entropy), int(correct))
