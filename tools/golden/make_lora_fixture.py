#!/usr/bin/env python3
"""Writes Tests/ModelTests/Fixtures/lora_golden.h5 and Tests/ModelTests/Fixtures/hf-llama-lora/: the
Llama golden fixture's tiny untied LlamaForCausalLM with Hugging Face `peft` LoRA adapters (random
lora_A and lora_B; for the `dora` group also DoRA's lora_magnitude_vector), their logits, loss and
adapter gradients, and the `lora/` adapter as PEFT saves it, for MeshLM's LoRA parity tests. Run
offline; see README.md beside this script.

    python3 tools/golden/make_lora_fixture.py [--fixtures DIR]
"""
import argparse
import copy
import json
import os
import shutil
import sys

# PEFT keeps target_modules as a set and writes it to adapter_config.json in set order, which follows
# Python's per-process string hash seed: fix the seed (re-executing once) so the file is reproducible.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import h5py
import numpy as np
import peft
import safetensors
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict
from transformers import LlamaForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The Llama fixture's model config, weight initialization (seed 1234), inputs, labels, targets and
# forward call, reused as they are: the base model here is llama_golden.h5's `untied` model.
from make_llama_fixture import hf_model, inputs, meshlm_config, run  # noqa: E402

ADAPTER = "default"  # PEFT's adapter name; it appears in parameter names but not in saved keys
PEFT_PREFIX = "base_model.model."
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GROUPS = {
    # group: (r, lora_alpha, target_modules, use_rslora, seed of lora_A/lora_B, use_dora)
    "lora": (4, 8, ALL_LINEAR, False, 5678, False),
    "rslora": (8, 16, ["q_proj", "v_proj", "down_proj"], True, 8765, False),
    "dora": (4, 8, ALL_LINEAR, False, 4321, True),
}
# Random adapters (PEFT starts lora_B at zero, which would make the adapter a no-op and the lora_A
# gradients zero): lora_A N(0, 0.15²), lora_B N(0, 0.1²).
A_STD, B_STD = 0.15, 0.1
# DoRA's magnitude starts at the row norms of W (B is zero then); drawn after A and B, each is
# scaled by 1 + N(0, MAGNITUDE_STD²) so that m / ‖W + s·B·A‖ is far from 1 in every row.
MAGNITUDE_STD = 0.1
MAGNITUDE = "lora_magnitude_vector"


def adapter_key(parameter_name):
    """PEFT's parameter name -> its saved key without `base_model.model.`:
    base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight
    -> model.layers.0.self_attn.q_proj.lora_A.weight
    base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector.default.weight
    -> model.layers.0.self_attn.q_proj.lora_magnitude_vector (PEFT saves DoRA's without .weight)"""
    assert parameter_name.startswith(PEFT_PREFIX), parameter_name
    name = parameter_name[len(PEFT_PREFIX):]
    assert f".{ADAPTER}." in name, name
    if f".{MAGNITUDE}.{ADAPTER}.weight" in name:
        return name.replace(f".{MAGNITUDE}.{ADAPTER}.weight", f".{MAGNITUDE}")
    return name.replace(f".{ADAPTER}.", ".")


def lora_model(group_name):
    """The base model (fresh, the Llama fixture's weights) and the PEFT model wrapping a copy of it."""
    r, alpha, targets, rslora, seed, dora = GROUPS[group_name]
    base = hf_model(meshlm_config(tied=False))
    # use_dora is passed only when set, so the other groups' configs stay as they were.
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), use_rslora=rslora,
                        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM", **({"use_dora": True} if dora else {}))
    model = get_peft_model(copy.deepcopy(base), config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
                parameter.copy_((A_STD if ".lora_A." in name else B_STD) * noise)
        for name, parameter in model.named_parameters():
            if f".{MAGNITUDE}." in name:
                noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
                parameter.mul_(1 + MAGNITUDE_STD * noise)
    return base, model


def scaling_of(model):
    """The scaling PEFT uses, read from every LoRA layer (they must agree)."""
    values = {module.scaling[ADAPTER] for module in model.modules() if isinstance(module, peft.tuners.lora.LoraLayer)}
    assert len(values) == 1, values
    return float(values.pop())


def write_group(file, group_name, interop_dir, llama_golden):
    r, alpha, targets, rslora, _, dora = GROUPS[group_name]
    base, model = lora_model(group_name)
    input_ids, position_ids, labels, targets_ = inputs()

    with torch.no_grad():
        base_logits = run(base, input_ids, position_ids, labels, document_masked=False).logits
    if llama_golden is not None:
        # Same code, seeds and thread count as llama_golden.h5's `untied` group: the same logits.
        assert np.array_equal(base_logits.numpy(), llama_golden["untied/logits"][...]), "base != llama_golden untied"

    scaling = scaling_of(model)
    lora_config = {"r": r, "lora_alpha": alpha, "target_modules": list(targets), "use_rslora": rslora,
                   "lora_dropout": 0.0, "scaling": scaling}
    if dora:
        lora_config["use_dora"] = True
    group = file.create_group(group_name)
    group.create_dataset("config_json", data=np.frombuffer(json.dumps(meshlm_config(False), indent=1).encode(), dtype=np.uint8))
    group.create_dataset("lora_config_json", data=np.frombuffer(json.dumps(lora_config).encode(), dtype=np.uint8))
    group.create_dataset("input_ids", data=input_ids.numpy().astype(np.int32))
    group.create_dataset("position_ids", data=position_ids.numpy().astype(np.int32))
    group.create_dataset("labels", data=labels.numpy().astype(np.int32))
    group.create_dataset("targets", data=targets_.numpy().astype(np.int32))
    for name, parameter in base.named_parameters():
        group.create_dataset("weights/" + name, data=parameter.detach().numpy())

    # Only the adapters train: PEFT froze every base parameter.
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert all(".lora_A." in n or ".lora_B." in n or (dora and f".{MAGNITUDE}." in n) for n in trainable), sorted(trainable)
    assert dora == any(f".{MAGNITUDE}." in n for n in trainable)
    saved = get_peft_model_state_dict(model)
    assert {PEFT_PREFIX + adapter_key(n) for n in trainable} == set(saved), (sorted(saved), sorted(trainable))
    for name, parameter in trainable.items():
        group.create_dataset("weights/" + adapter_key(name), data=parameter.detach().numpy())

    model.zero_grad()
    output = run(model, input_ids, position_ids, labels, document_masked=False)
    output.loss.backward()
    logits = output.logits.detach()
    counted = targets_ != -100
    explicit = torch.nn.functional.cross_entropy(logits[counted], targets_[counted])
    assert abs(explicit.item() - output.loss.item()) < 1e-6, (explicit.item(), output.loss.item())
    adapter_effect = (logits - base_logits).abs().max().item()
    assert adapter_effect > 0.1, adapter_effect
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)
    smallest_grad = min(p.grad.abs().max().item() for p in trainable.values())
    assert smallest_grad > 1e-3, smallest_grad
    group.create_dataset("logits", data=logits.numpy())
    group.create_dataset("loss", data=np.array([output.loss.item()], dtype=np.float64))
    for name, parameter in trainable.items():
        group.create_dataset("grad/" + adapter_key(name), data=parameter.grad.numpy())

    merged = copy.deepcopy(model).merge_and_unload()
    assert isinstance(merged, LlamaForCausalLM)
    with torch.no_grad():
        merged_logits = run(merged, input_ids, position_ids, labels, document_masked=False).logits
    merge_difference = (merged_logits - logits).abs().max().item()
    assert merge_difference < 1e-5, merge_difference

    interop = ""
    if interop_dir is not None:
        base_dir, adapter_dir = os.path.join(interop_dir, "base"), os.path.join(interop_dir, "adapter")
        for directory in (base_dir, adapter_dir):
            shutil.rmtree(directory, ignore_errors=True)
        base.save_pretrained(base_dir, safe_serialization=True)
        model.save_pretrained(adapter_dir, safe_serialization=True)
        # PEFT also writes a boilerplate model card; the adapter is adapter_config.json and
        # adapter_model.safetensors.
        card = os.path.join(adapter_dir, "README.md")
        if os.path.exists(card):
            os.remove(card)
        with safetensors.safe_open(os.path.join(adapter_dir, "adapter_model.safetensors"), "pt") as f:
            on_disk = set(f.keys())
        assert on_disk == set(saved), (sorted(on_disk), sorted(saved))
        loaded = PeftModel.from_pretrained(
            LlamaForCausalLM.from_pretrained(base_dir, attn_implementation="eager"), adapter_dir)
        with torch.no_grad():
            loaded_logits = run(loaded, input_ids, position_ids, labels, document_masked=False).logits
        assert torch.equal(loaded_logits, logits), (loaded_logits - logits).abs().max().item()
        interop = f", {interop_dir} reloads to identical logits"

    print(f"{group_name}: {len(trainable)} adapter tensors, scaling {scaling}, loss {output.loss.item():.6f}, "
          f"adapter moves logits by up to {adapter_effect:.3f}, smallest max|grad| {smallest_grad:.2e}, "
          f"merged vs unmerged {merge_difference:.1e}{interop}")


def main():
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "ModelTests", "Fixtures")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", default=os.path.normpath(default))
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    output = os.path.join(arguments.fixtures, "lora_golden.h5")
    llama_path = os.path.join(arguments.fixtures, "llama_golden.h5")
    llama_golden = h5py.File(llama_path, "r") if os.path.exists(llama_path) else None
    temporary = output + ".tmp"
    with h5py.File(temporary, "w") as file:
        file.attrs["generator"] = "tools/golden/make_lora_fixture.py"
        file.attrs["versions"] = (f"torch {torch.__version__}, transformers {transformers.__version__}, "
                                  f"peft {peft.__version__}, h5py {h5py.__version__}")
        write_group(file, "lora", os.path.join(arguments.fixtures, "hf-llama-lora"), llama_golden)
        write_group(file, "rslora", None, llama_golden)
        write_group(file, "dora", None, llama_golden)
    if llama_golden is not None:
        llama_golden.close()
    os.replace(temporary, output)
    print(f"wrote {output} ({os.path.getsize(output)} bytes)")


if __name__ == "__main__":
    main()
