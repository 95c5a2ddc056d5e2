#!/usr/bin/env python3
"""Batch-1 decode: MeshLM against llama.cpp on the same weights and threads, in one run.

    bash tools/setup-llama-cpp.sh                       # once: builds llama-bench (~7 min)
    /tmp/llama-cpp/venv/bin/python tools/bench-decode-llamacpp.py [--threads 1] [--tokens 64] \
        [--formats f32 q8_0 q4_0]

Random weights with the shapes of --model (default configs/model/124m.yaml) are written once as
a Hugging Face directory (config.json + model.safetensors), imported into a MeshLM checkpoint
with `meshlm ckpt import-hf`, and written as an f32 GGUF for llama.cpp with the gguf-py library
that llama.cpp vendors (its vocabulary metadata taken from llama.cpp's own
models/ggml-vocab-llama-spm.gguf, 32000 tokens; the prompt tokens are random, so the vocabulary
only has to exist). q/k are not permuted into llama.cpp's RoPE order: the speed does not depend
on the values. Then `llama-bench -p 0 -n TOKENS` and `meshlm bench decode --checkpoint` run
alternately --repeats times; the medians and their ratio are printed.

--formats q8_0 / q4_0 (issue 18): the same weights quantized on both sides by each program's own
quantizer — MeshLM's with `meshlm ckpt quantize --format F` (the head in q8_0), llama.cpp's GGUF
with gguf-py's reference quantizer (gguf.quants, the layer matrices in F, output.weight in Q8_0,
token_embd and norms in f32, as MeshLM keeps them) — and every format of every repeat measured in
turn, so load from other processes falls on all of them alike.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np
import yaml


def parse():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.join(root, "configs/model/124m.yaml"))
    parser.add_argument("--llama-cpp", default="/tmp/llama-cpp", help="PREFIX of tools/setup-llama-cpp.sh")
    parser.add_argument("--meshlm", default=os.path.join(root, ".build/release/meshlm"))
    parser.add_argument("--work", default="/tmp/meshlm-bench-llamacpp", help="where the model files go (reused)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--formats", nargs="+", default=["f32"], choices=["f32", "q8_0", "q4_0"])
    return parser.parse_args()


def hf_config(model):
    keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings"]
    config = {key: model[key] for key in keys if key in model}
    config.setdefault("num_key_value_heads", config["num_attention_heads"])
    config.setdefault("rope_theta", 10000.0)
    config.setdefault("rms_norm_eps", 1e-5)
    config.setdefault("tie_word_embeddings", False)
    config.update({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float32",
                   "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2})
    return config


def random_tensors(config, seed=1234):
    generator = np.random.default_rng(seed)
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = hidden // heads

    def matrix(rows, columns):
        return (generator.standard_normal((rows, columns), dtype=np.float32) * 0.02).astype(np.float32)

    tensors = {"model.embed_tokens.weight": matrix(config["vocab_size"], hidden),
               "model.norm.weight": np.ones(hidden, dtype=np.float32)}
    if not config["tie_word_embeddings"]:
        tensors["lm_head.weight"] = matrix(config["vocab_size"], hidden)
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        tensors[prefix + "input_layernorm.weight"] = np.ones(hidden, dtype=np.float32)
        tensors[prefix + "post_attention_layernorm.weight"] = np.ones(hidden, dtype=np.float32)
        tensors[prefix + "self_attn.q_proj.weight"] = matrix(heads * head_dim, hidden)
        tensors[prefix + "self_attn.k_proj.weight"] = matrix(kv_heads * head_dim, hidden)
        tensors[prefix + "self_attn.v_proj.weight"] = matrix(kv_heads * head_dim, hidden)
        tensors[prefix + "self_attn.o_proj.weight"] = matrix(hidden, heads * head_dim)
        tensors[prefix + "mlp.gate_proj.weight"] = matrix(inter, hidden)
        tensors[prefix + "mlp.up_proj.weight"] = matrix(inter, hidden)
        tensors[prefix + "mlp.down_proj.weight"] = matrix(hidden, inter)
    return tensors


GGUF_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
              "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def gguf_name(name):
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    _, _, layer, rest = name.split(".", 3)
    return f"blk.{layer}.{GGUF_NAMES[rest.rsplit('.', 1)[0]]}.weight"


def write_gguf(path, config, tensors, vocabulary_path, weight_format="f32"):
    import gguf
    import gguf.quants
    kinds = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}
    reader = gguf.GGUFReader(vocabulary_path)
    writer = gguf.GGUFWriter(path, "llama")
    heads = config["num_attention_heads"]
    writer.add_name("meshlm-bench-random")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_rope_freq_base(float(config["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                          "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[weight_format])
    # The vocabulary: every tokenizer.* key of llama.cpp's Llama SPM vocabulary file.
    for field in reader.fields.values():
        if not field.name.startswith("tokenizer."):
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            element = field.types[-1]
            if element == gguf.GGUFValueType.STRING:
                values = [bytes(field.parts[index]).decode("utf-8", errors="replace") for index in field.data]
            else:
                values = [field.parts[index].tolist()[0] for index in field.data]
            writer.add_array(field.name, values)
        elif kind == gguf.GGUFValueType.STRING:
            writer.add_string(field.name, bytes(field.parts[field.data[0]]).decode("utf-8"))
        else:
            writer.add_key_value(field.name, field.parts[field.data[0]].tolist()[0], kind)
    for name, value in tensors.items():
        kind = None
        if weight_format != "f32" and name.startswith("model.layers.") and value.ndim == 2:
            kind = kinds[weight_format]
        elif weight_format != "f32" and name == "lm_head.weight":
            kind = kinds["q8_0"]
        if kind is None:
            writer.add_tensor(gguf_name(name), value)
        else:
            writer.add_tensor(gguf_name(name), gguf.quants.quantize(value, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def prepare(args):
    with open(args.model) as handle:
        config = hf_config(yaml.safe_load(handle))
    os.makedirs(args.work, exist_ok=True)
    hf_directory = os.path.join(args.work, "hf")
    checkpoint = os.path.join(args.work, "meshlm")
    gguf_path = os.path.join(args.work, "model-f32.gguf")
    stamp = os.path.join(args.work, "config.json")
    if not (os.path.exists(stamp) and json.load(open(stamp)) == config and os.path.exists(gguf_path)
            and os.path.exists(os.path.join(checkpoint, "latest"))):
        write_models(args, config, hf_directory, checkpoint, gguf_path)
        json.dump(config, open(stamp, "w"))
    models = {"f32": (checkpoint, gguf_path)}
    for weight_format in args.formats:
        if weight_format == "f32":
            continue
        quantized = os.path.join(args.work, f"meshlm-{weight_format}")
        quantized_gguf = os.path.join(args.work, f"model-{weight_format}.gguf")
        if not os.path.exists(os.path.join(quantized, "latest")) or os.path.getmtime(quantized) < os.path.getmtime(stamp):
            subprocess.run([args.meshlm, "ckpt", "quantize", "--checkpoint", checkpoint, "--output", quantized,
                            "--format", weight_format, "--head", "q8_0"], check=True, stdout=subprocess.DEVNULL)
        if not os.path.exists(quantized_gguf) or os.path.getmtime(quantized_gguf) < os.path.getmtime(stamp):
            from safetensors.numpy import load_file
            tensors = load_file(os.path.join(hf_directory, "model.safetensors"))
            sys.path.insert(0, os.path.join(args.llama_cpp, "src", "gguf-py"))
            write_gguf(quantized_gguf + ".partial", config, tensors,
                       os.path.join(args.llama_cpp, "src", "models", "ggml-vocab-llama-spm.gguf"), weight_format)
            os.replace(quantized_gguf + ".partial", quantized_gguf)
        models[weight_format] = (quantized, quantized_gguf)
    return config, models


def write_models(args, config, hf_directory, checkpoint, gguf_path):
    from safetensors.numpy import save_file
    tensors = random_tensors(config)
    os.makedirs(hf_directory, exist_ok=True)
    json.dump(config, open(os.path.join(hf_directory, "config.json"), "w"), indent=1)
    save_file(tensors, os.path.join(hf_directory, "model.safetensors"), metadata={"format": "pt"})
    subprocess.run([args.meshlm, "ckpt", "import-hf", hf_directory, "--output", checkpoint], check=True,
                   stdout=subprocess.DEVNULL)
    sys.path.insert(0, os.path.join(args.llama_cpp, "src", "gguf-py"))
    write_gguf(gguf_path + ".partial", config, tensors, os.path.join(args.llama_cpp, "src", "models", "ggml-vocab-llama-spm.gguf"))
    os.replace(gguf_path + ".partial", gguf_path)


def llama_cpp_rate(args, gguf_path):
    bench = os.path.join(args.llama_cpp, "bin", "llama-bench")
    output = subprocess.run([bench, "-m", gguf_path, "-p", "0", "-n", str(args.tokens), "-t", str(args.threads),
                             "-r", "1", "-o", "json"], check=True, capture_output=True, text=True).stdout
    return float(json.loads(output)[0]["avg_ts"])


def meshlm_rate(args, checkpoint):
    environment = dict(os.environ)
    environment.pop("OPENBLAS_CORETYPE", None)
    output = subprocess.run([args.meshlm, "bench", "decode", "--checkpoint", checkpoint, "--threads", str(args.threads),
                             "--concurrency", "1", "--repeats", "1", "--tokens", str(args.tokens), "--json"],
                            check=True, capture_output=True, text=True, env=environment).stdout
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("concurrency") == 1 and "tokens_per_s" in record:
                return float(record["tokens_per_s"]), record.get("stream_bound_tokens_per_s")
    raise SystemExit(f"error: no batch-1 figure in meshlm's output:\n{output}")


def main():
    args = parse()
    config, models = prepare(args)
    llama = {name: [] for name in args.formats}
    meshlm = {name: [] for name in args.formats}
    bounds = {name: [] for name in args.formats}
    for repeat in range(args.repeats):
        for name in args.formats:
            checkpoint, gguf_path = models[name]
            llama[name].append(llama_cpp_rate(args, gguf_path))
            rate, bound = meshlm_rate(args, checkpoint)
            meshlm[name].append(rate)
            if bound:
                bounds[name].append(bound)
            print(f"repeat {repeat + 1} {name}: llama.cpp {llama[name][-1]:.1f} tok/s, MeshLM {meshlm[name][-1]:.1f} tok/s", flush=True)
    print(f"model: {args.model} ({config['num_hidden_layers']} layers, hidden {config['hidden_size']}, vocab "
          f"{config['vocab_size']}), batch 1, {args.tokens} tokens, {args.threads} thread(s), {args.repeats} repeats")
    for name in args.formats:
        llama_median, meshlm_median = statistics.median(llama[name]), statistics.median(meshlm[name])
        bound = f", STREAM triad bound for MeshLM's bytes {statistics.median(bounds[name]):.1f} tok/s" if bounds[name] else ""
        print(f"{name}: llama.cpp median {llama_median:.1f} tok/s (range {min(llama[name]):.1f}–{max(llama[name]):.1f}); "
              f"MeshLM median {meshlm_median:.1f} (range {min(meshlm[name]):.1f}–{max(meshlm[name]):.1f}){bound}; "
              f"MeshLM / llama.cpp {meshlm_median / llama_median:.2f}×")
    if "f32" in args.formats:
        f32 = statistics.median(meshlm["f32"])
        for name in args.formats:
            if name != "f32":
                print(f"MeshLM {name} / MeshLM f32: {statistics.median(meshlm[name]) / f32:.2f}×")


if __name__ == "__main__":
    main()
