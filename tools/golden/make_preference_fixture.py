#!/usr/bin/env python3
"""Writes Tests/TrainingTests/Fixtures/preference_losses.json: the losses, gradients and logged
metrics of TRL's preference objectives (DPO and its loss types, SimPO through CPOTrainer, ORPO,
KTO, the reward model's Bradley-Terry loss) on small seeded batches, computed by TRL's own trainer
code, for Tests/TrainingTests/PreferenceLossTests.swift. See README.md beside this script.

    /tmp/golden-venv/bin/python tools/golden/make_preference_fixture.py

No model is trained or even built. Each trainer's loss method is called unbound on an object made
with `object.__new__` that carries only the attributes the method reads, and the model it calls is
a stand-in that returns per-token log-probabilities chosen here: a leaf float64 tensor `t`
[sequences, positions] that requires grad. So the loss, its autograd gradient and the metrics are
TRL's, and the gradient with respect to a sequence's log-prob sum is the gradient at any one of its
completion tokens (the script asserts they agree).

Trainers that take logits (CPO, ORPO) get a two-word vocabulary in which every target is word 1
and the logits are [0, a] with a = t − log(1 − eᵗ), so that log_softmax picks log σ(a) = t.
"""
import argparse
import json
import math
import os
import types
from collections import defaultdict

import numpy as np
import torch
import transformers
import trl
from trl.experimental.cpo.cpo_trainer import CPOTrainer
from trl.experimental.orpo.orpo_trainer import ORPOTrainer
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.kto_trainer import KTOTrainer
from trl.trainer.reward_trainer import RewardTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUTPUT = os.path.join(ROOT, "Tests", "TrainingTests", "Fixtures", "preference_losses.json")
DPO_METRICS = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
               "logps/chosen", "logps/rejected"]
torch.set_default_dtype(torch.float64)


class Accelerator:
    """What the loss methods read of accelerate's Accelerator on one process."""
    device = torch.device("cpu")

    def gather(self, tensor):
        return tensor

    gather_for_metrics = gather


class StandIn:
    """The model TRL calls: returns fixed outputs whatever the inputs (`respond` picks them)."""
    training = True

    def __init__(self, respond):
        self.respond = respond

    def __call__(self, *arguments, **keywords):
        return self.respond(*arguments, **keywords)


def trainer_state(cls, **attributes):
    """An instance of a TRL trainer class with only the attributes its loss method reads."""
    state = object.__new__(cls)
    state.accelerator = Accelerator()
    state._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    state._total_train_tokens = 0
    state._tp_size = 1
    state.aux_loss_enabled = False
    state.args = types.SimpleNamespace(gradient_checkpointing_kwargs=None, discopop_tau=0.05,
                                       center_rewards_coefficient=None)
    for name, value in attributes.items():
        setattr(state, name, value)
    return state


def split(total, count, rng):
    """`count` negative per-token log-probs summing to `total` (< 0), unevenly."""
    weights = rng.uniform(0.2, 1.8, count)
    return total * weights / weights.sum()


def token_tensor(sums, counts, rng):
    """Per-token log-probs [sequences, positions] (positions = 1 prompt target slot less than
    the sequence: the shifted completion mask), the shifted completion mask, and the unshifted one
    (a 1-token prompt, the completion, then padding)."""
    positions = max(counts) + 1
    values = torch.zeros(len(sums), positions)
    shifted = torch.zeros(len(sums), positions, dtype=torch.long)
    for row, (total, count) in enumerate(zip(sums, counts)):
        values[row, :count] = torch.from_numpy(split(total, count, rng))
        shifted[row, :count] = 1
    unshifted = torch.cat([torch.zeros(len(sums), 1, dtype=torch.long), shifted], dim=1)
    return values.requires_grad_(True), shifted, unshifted


def sequence_gradients(values, shifted):
    """∂loss/∂(Σ log p) per sequence: the gradient at its completion tokens, which all agree."""
    gradients = []
    for row in range(values.shape[0]):
        entries = values.grad[row][shifted[row].bool()]
        spread = (entries.max() - entries.min()).abs().item()
        # (the two-word logits pass the gradient through 1 / (1 − eᵗ), which loses digits as t → 0)
        assert spread <= 1e-9 * max(1.0, entries.abs().max().item()), (row, entries)
        gradients.append(entries.mean().item())
    return gradients


def two_word_logits(values, shifted):
    """Logits [sequences, positions + 1, 2] whose log_softmax at word 1 is `values` where
    `shifted` is 1 (the last position predicts nothing)."""
    safe = torch.where(shifted.bool(), values, torch.full_like(values, -1.0))
    a = torch.where(shifted.bool(), safe - torch.log(-torch.expm1(safe)), torch.zeros_like(values))
    logits = torch.stack([torch.zeros_like(a), a], dim=-1)
    return torch.cat([logits, torch.zeros(values.shape[0], 1, 2)], dim=1)


def pair_records(chosen, rejected, chosen_tokens, rejected_tokens, reference_chosen, reference_rejected):
    return [{"chosen": c, "rejected": r, "chosenTokens": int(nc), "rejectedTokens": int(nr),
             "referenceChosen": rc, "referenceRejected": rr}
            for c, r, nc, nr, rc, rr in zip(chosen, rejected, chosen_tokens, rejected_tokens,
                                            reference_chosen, reference_rejected)]


def random_pairs(rng, count, delta_scale=None, beta=0.1):
    """Policy and reference sums for `count` pairs with varied lengths (3–40 tokens). With
    `delta_scale`, the policy is moved so that β·(chosen and rejected log-ratio difference) is
    about ±delta_scale (the large-magnitude cases)."""
    chosen_tokens = rng.integers(3, 41, count)
    rejected_tokens = rng.integers(3, 41, count)
    reference_chosen = -chosen_tokens * rng.uniform(0.4, 2.5, count)
    reference_rejected = -rejected_tokens * rng.uniform(0.4, 2.5, count)
    chosen = reference_chosen + rng.normal(0, 4, count)
    rejected = reference_rejected + rng.normal(0, 4, count)
    if delta_scale is not None:
        signs = np.where(np.arange(count) % 2 == 0, 1.0, -1.0)
        target = signs * rng.uniform(0.6, 1.0, count) * delta_scale / beta
        shift = target - ((chosen - reference_chosen) - (rejected - reference_rejected))
        # A positive shift lowers the rejected completion, a negative one the chosen: both stay < 0.
        rejected = rejected - np.maximum(shift, 0)
        chosen = chosen + np.minimum(shift, 0)
    return [float(x) for x in chosen], [float(x) for x in rejected], chosen_tokens, rejected_tokens, \
        [float(x) for x in reference_chosen], [float(x) for x in reference_rejected]


def dpo_case(name, rng, loss_types, loss_weights=None, beta=0.1, label_smoothing=0.0, count=5, delta_scale=None):
    chosen, rejected, nc, nr, ref_c, ref_r = random_pairs(rng, count, delta_scale, beta)
    values, shifted, unshifted = token_tensor(chosen + rejected, list(nc) + list(nr), rng)
    input_ids = torch.where(unshifted.bool(), 1, 0)
    input_ids[:, 0] = 1
    inputs = {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(), "completion_mask": unshifted,
              "ref_chosen_logps": torch.tensor(ref_c), "ref_rejected_logps": torch.tensor(ref_r)}

    def respond(**keywords):
        zeros = torch.zeros_like(values).detach()
        return types.SimpleNamespace(log_probs=values, logits=two_word_logits(values, shifted), entropy=zeros,
                                     mean_logits=zeros, is_top1=zeros.bool())

    model = StandIn(respond)
    state = trainer_state(DPOTrainer, model=model, beta=beta, precompute_ref_logps=True, loss_types=loss_types,
                          loss_weights=loss_weights or [1.0] * len(loss_types), ld_alpha=None,
                          f_divergence_type="reverse_kl", f_alpha_divergence_coef=1.0,
                          label_smoothing=label_smoothing, use_weighting=False)
    loss = DPOTrainer._compute_loss(state, model, inputs, return_outputs=False)
    loss.backward()
    gradients = sequence_gradients(values, shifted)
    metrics = {key: state._metrics["train"][key][-1] for key in DPO_METRICS}
    return {"name": name, "trainer": "DPOTrainer",
            "settings": {"lossTypes": loss_types, "lossWeights": loss_weights or [1.0] * len(loss_types),
                         "beta": beta, "labelSmoothing": label_smoothing},
            "pairs": pair_records(chosen, rejected, nc, nr, ref_c, ref_r),
            "loss": loss.item(), "chosenGradients": gradients[:count], "rejectedGradients": gradients[count:],
            "metrics": metrics}


def reference_free_batch(rng, count, average_delta=None, beta=1.0):
    """Policy sums for reference-free losses; with `average_delta`, β·(difference of average
    log-probs) is about ±average_delta."""
    chosen_tokens = rng.integers(3, 41, count)
    rejected_tokens = rng.integers(3, 41, count)
    chosen_average = -rng.uniform(0.2, 2.5, count)
    rejected_average = -rng.uniform(0.2, 2.5, count)
    if average_delta is not None:
        signs = np.where(np.arange(count) % 2 == 0, 1.0, -1.0)
        spread = rng.uniform(0.6, 1.0, count) * average_delta / beta
        chosen_average = np.where(signs > 0, -rng.uniform(0.01, 0.1, count), -spread)
        rejected_average = np.where(signs > 0, -spread, -rng.uniform(0.01, 0.1, count))
    return chosen_average * chosen_tokens, rejected_average * rejected_tokens, chosen_tokens, rejected_tokens


def concatenated_case(trainer, name, rng, state_attributes, chosen, rejected, nc, nr, settings, metric_names):
    """CPOTrainer or ORPOTrainer's `get_batch_loss_metrics` on a two-word stand-in."""
    count = len(chosen)
    values, shifted, unshifted = token_tensor(list(chosen) + list(rejected), list(nc) + list(nr), rng)
    logits = two_word_logits(values, shifted)
    input_ids = torch.where(unshifted.bool(), 1, 0)
    input_ids[:, 0] = 1                                    # the 1-token prompt
    attention_mask = (input_ids != 0).long()
    labels = torch.where(unshifted.bool(), input_ids, -100)
    batch = {"chosen_input_ids": input_ids[:count], "chosen_attention_mask": attention_mask[:count],
             "chosen_labels": labels[:count], "rejected_input_ids": input_ids[count:],
             "rejected_attention_mask": attention_mask[count:], "rejected_labels": labels[count:]}
    model = StandIn(lambda *arguments, **keywords: types.SimpleNamespace(logits=logits))
    state = trainer_state(trainer, model=model, is_encoder_decoder=False, pad_token_id=0, padding_value=0,
                          **state_attributes)
    loss, metrics = trainer.get_batch_loss_metrics(state, model, batch)
    loss.backward()
    gradients = sequence_gradients(values, shifted)
    zeros = [0.0] * count
    return {"name": name, "trainer": trainer.__name__, "settings": settings,
            "pairs": pair_records([float(x) for x in chosen], [float(x) for x in rejected], nc, nr, zeros, zeros),
            "loss": loss.item(), "chosenGradients": gradients[:count], "rejectedGradients": gradients[count:],
            "metrics": {key: float(metrics[key]) for key in metric_names}}


def simpo_case(name, rng, beta, gamma, cpo_alpha, label_smoothing=0.0, count=5, average_delta=None):
    chosen, rejected, nc, nr = reference_free_batch(rng, count, average_delta, beta)
    attributes = {"loss_type": "simpo", "beta": beta, "simpo_gamma": gamma, "cpo_alpha": cpo_alpha,
                  "label_smoothing": label_smoothing, "alpha": 0.0}
    settings = {"lossTypes": ["simpo"], "beta": beta, "simpoGamma": gamma, "cpoAlpha": cpo_alpha,
                "labelSmoothing": label_smoothing}
    # CPOTrainer logs nll_loss as 0 when cpo_alpha is 0 (it skips the cross-entropy): not recorded then.
    names = DPO_METRICS + (["nll_loss"] if cpo_alpha != 0 else [])
    return concatenated_case(CPOTrainer, name, rng, attributes, chosen, rejected, nc, nr, settings, names)


def orpo_case(name, rng, beta, count=5, chosen_average=None, rejected_average=None):
    chosen, rejected, nc, nr = reference_free_batch(rng, count)
    if chosen_average is not None:
        chosen, rejected = np.array(chosen_average) * nc, np.array(rejected_average) * nr
    settings = {"lossTypes": ["orpo"], "beta": beta}
    names = DPO_METRICS + ["nll_loss", "log_odds_ratio", "log_odds_chosen"]
    return concatenated_case(ORPOTrainer, name, rng, {"beta": beta}, chosen, rejected, nc, nr, settings, names)


def kto_case(name, rng, beta, desirable_weight, undesirable_weight, kl_estimate, desirable, scale=4.0):
    """KTOTrainer._compute_loss with precomputed reference log-probs; the KL sequences' policy and
    reference sums are set so that their mean difference (TRL's z₀ before the clamp) is `kl_estimate`."""
    count = len(desirable)
    tokens = rng.integers(3, 41, count)
    reference = -tokens * rng.uniform(0.4, 2.5, count)
    policy = reference + rng.normal(0, scale, count)
    values, shifted, unshifted = token_tensor([float(x) for x in policy], list(tokens), rng)
    kl_reference = -tokens * rng.uniform(0.4, 2.5, count)
    kl_difference = rng.normal(0, 1, count)
    kl_difference += kl_estimate - kl_difference.mean()
    kl_values, _, kl_unshifted = token_tensor([float(x) for x in kl_reference + kl_difference], list(tokens), rng)
    kl_values = kl_values.detach()
    input_ids = torch.where(unshifted.bool(), 1, 0)
    input_ids[:, 0] = 1
    kl_input_ids = torch.where(kl_unshifted.bool(), 1, 0)
    kl_input_ids[:, 0] = 1
    batch = {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(), "completion_mask": unshifted,
             "KL_input_ids": kl_input_ids, "KL_attention_mask": (kl_input_ids != 0).long(),
             "KL_completion_mask": kl_unshifted, "label": torch.tensor(desirable),
             "ref_logps": torch.tensor(reference), "ref_KL_logps": torch.tensor(kl_reference)}

    def respond(**keywords):
        chosen_values = kl_values if keywords["input_ids"] is kl_input_ids else values
        zeros = torch.zeros_like(chosen_values).detach()
        return types.SimpleNamespace(log_probs=chosen_values, entropy=zeros, mean_logits=zeros,
                                     is_top1=zeros.bool())

    model = StandIn(respond)
    state = trainer_state(KTOTrainer, model=model, loss_type="kto", calculate_KL=True, precompute_ref_logps=True,
                          beta=beta, desirable_weight=desirable_weight, undesirable_weight=undesirable_weight)
    loss = KTOTrainer._compute_loss(state, model, batch, return_outputs=False)
    loss.backward()
    names = ["kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"]
    metrics = {key: state._metrics["train"][key][-1] for key in names if state._metrics["train"][key]}
    estimate = float((kl_values.sum(-1) - torch.tensor(kl_reference)).mean())
    return {"name": name, "settings": {"beta": beta, "desirableWeight": desirable_weight,
                                        "undesirableWeight": undesirable_weight},
            "sequences": [{"policy": float(p), "reference": float(r), "desirable": bool(d)}
                          for p, r, d in zip(policy, reference, desirable)],
            "klEstimate": estimate, "loss": loss.item(), "gradients": sequence_gradients(values, shifted),
            "metrics": metrics}


def reward_case(name, rng, count, margins=None, center=None, scale=2.0):
    """RewardTrainer.compute_loss on scores [chosen…, rejected…] that the stand-in returns."""
    scores = torch.tensor(rng.normal(0, scale, 2 * count)).reshape(-1, 1).requires_grad_(True)
    inputs = {"input_ids": torch.ones(2 * count, 4, dtype=torch.long),
              "attention_mask": torch.ones(2 * count, 4, dtype=torch.long)}
    if margins is not None:
        inputs["margin"] = torch.tensor(margins)
    model = StandIn(lambda **keywords: types.SimpleNamespace(logits=scores))
    state = trainer_state(RewardTrainer, model=model)
    state.args.center_rewards_coefficient = center
    loss = RewardTrainer.compute_loss(state, model, inputs)
    loss.backward()
    names = ["accuracy", "margin", "mean_reward", "min_reward", "max_reward"]
    values = scores.detach().reshape(-1).tolist()
    gradient = scores.grad.reshape(-1).tolist()
    return {"name": name, "centerRewardsCoefficient": center,
            "pairs": [{"chosen": values[i], "rejected": values[count + i],
                       "margin": 0.0 if margins is None else margins[i]} for i in range(count)],
            "loss": loss.item(), "chosenGradients": gradient[:count], "rejectedGradients": gradient[count:],
            "metrics": {key: state._metrics["train"][key][-1] for key in names}}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", default=OUTPUT)
    arguments = parser.parse_args()
    rng = np.random.default_rng(20240611)
    preference = [
        dpo_case("sigmoid", rng, ["sigmoid"]),
        dpo_case("sigmoid_large", rng, ["sigmoid"], beta=0.5, delta_scale=40, count=6),
        dpo_case("hinge", rng, ["hinge"], count=6),
        dpo_case("hinge_beta0.5", rng, ["hinge"], beta=0.5, count=6),
        dpo_case("ipo", rng, ["ipo"]),
        dpo_case("ipo_beta0.5", rng, ["ipo"], beta=0.5, count=4),
        dpo_case("robust", rng, ["robust"], label_smoothing=0.2),
        dpo_case("robust_large", rng, ["robust"], beta=0.3, label_smoothing=0.1, delta_scale=45, count=6),
        dpo_case("sigmoid_norm", rng, ["sigmoid_norm"], beta=2.0),
        dpo_case("sft", rng, ["sft"]),
        dpo_case("sigmoid_sft_rpo", rng, ["sigmoid", "sft"], loss_weights=[1.0, 0.5]),
        dpo_case("weighted_list", rng, ["sigmoid", "ipo", "hinge", "robust", "sigmoid_norm", "sft"],
                 loss_weights=[0.8, 0.3, 0.5, 0.2, 0.4, 0.25], label_smoothing=0.15, count=6),
        simpo_case("simpo", rng, beta=2.0, gamma=0.5, cpo_alpha=0.0),
        simpo_case("simpo_cpo_alpha", rng, beta=2.5, gamma=1.0, cpo_alpha=1.0, label_smoothing=0.1, count=6),
        simpo_case("simpo_large", rng, beta=10.0, gamma=0.5, cpo_alpha=0.3, average_delta=40, count=4),
        orpo_case("orpo", rng, beta=0.1),
        orpo_case("orpo_beta0.5", rng, beta=0.5, count=6),
        orpo_case("orpo_large", rng, beta=1.0, count=4,
                  chosen_average=[-1e-5, -30.0, -3e-5, -45.0], rejected_average=[-30.0, -1e-5, -40.0, -2e-5]),
    ]
    kto = [
        kto_case("kto", rng, 0.1, 1.0, 1.0, 0.8, [True, False, True, True, False, False]),
        kto_case("kto_weights_clamped", rng, 0.5, 1.33, 0.7, -1.5, [True, True, False, True, False], scale=40),
        kto_case("kto_large", rng, 0.5, 1.0, 1.0, 2.0, [True, False, True, False], scale=120),
        kto_case("kto_desirable_only", rng, 0.1, 1.0, 1.0, 0.3, [True, True, True]),
    ]
    reward = [
        reward_case("bradley_terry", rng, 5),
        reward_case("margin_center", rng, 6, margins=[0.5, 1.0, 0.0, 2.0, 0.25, 1.5], center=0.01),
        reward_case("large_center", rng, 4, margins=[3.0, 0.0, 1.0, 0.5], center=0.05, scale=25.0),
    ]
    document = {
        "versions": {"trl": trl.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
        "preference": preference, "kto": kto, "reward": reward,
    }
    os.makedirs(os.path.dirname(arguments.output), exist_ok=True)
    with open(arguments.output, "w") as file:
        json.dump(document, file, indent=1)
        file.write("\n")
    for case in preference + kto + reward:
        print(f"{case['name']:>22}: loss {case['loss']:.6g}")


if __name__ == "__main__":
    main()
