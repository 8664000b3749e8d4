#!/usr/bin/env python3
"""Generate a tiny, deterministic decoder-only LM in Optimum's ONNX layout.

The model is a toy "oracle": the argmax of the logits at every position is a
fixed function of the current input token (byte b -> b+1, 'z' -> EOS), so
greedy decoding is predictable.  The logits also carry a small term
(0.5 * tanh(h . Wout)) that depends on the full attended history, so a broken
KV cache, mask or position handling shows up as different logit values.

Layout (Hugging Face Optimum "decoder with past"):
  inputs : input_ids, attention_mask, position_ids, past_key_values.{i}.{key,value}
  outputs: logits, present.{i}.{key,value}
Vocabulary: 256 byte tokens (id == byte value) + <|endoftext|> (id 256).

Usage: make-tiny-lm.py --out DIR [--layers 2 --heads 2 --head-dim 8 --mlp 0 --seed 7]
Needs: onnx, onnxruntime, tokenizers, numpy.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

VOCAB = 257
EOS = 256
MAX_POS = 512
OPSET = 18
IR_VERSION = 9


def next_token(b):
    """The oracle: which token the model predicts after token b."""
    if b == ord("z") or b == EOS:
        return EOS
    return (b + 1) % 256  # 255 wraps to 0


# --------------------------------------------------------------------------- model
class Graph:
    """Tiny helper to accumulate nodes/initializers with unique names."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def op(self, op_type, inputs, out=None, **attrs):
        self.n += 1
        out = out or f"{op_type.lower()}_{self.n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n{self.n}_{op_type}", **attrs))
        return out


def build_model(layers, heads, head_dim, mlp, seed):
    d = heads * head_dim
    rng = np.random.default_rng(seed)

    def w(*shape, scale):  # always float32, regardless of numpy's promotion rules
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    g = Graph()
    i64 = lambda name, v: g.init(name, np.array(v, dtype=np.int64))
    f32 = lambda name, v: g.init(name, np.array(v, dtype=np.float32))
    zero, one = i64("c_zero", 0), i64("c_one", 1)
    f_zero, f_neg = f32("c_fzero", 0.0), f32("c_neg_big", -1e9)

    # Embeddings: x = Tok[input_ids] + Pos[position_ids]   -> [B, S, d]
    tok = g.init("embed.tokens", w(VOCAB, d, scale=0.5))
    pos = g.init("embed.positions", w(MAX_POS, d, scale=0.5))
    x = g.op("Add", [g.op("Gather", [tok, "input_ids"]), g.op("Gather", [pos, "position_ids"])])

    # Additive attention bias [B, 1, S, T]: causal (key j <= past_len + i) AND attention_mask.
    past_len = g.op("Gather", [g.op("Shape", ["past_key_values.0.key"]), i64("c_two", 2)])
    seq_len = g.op("Gather", [g.op("Shape", ["input_ids"]), one])
    tot_len = g.op("Gather", [g.op("Shape", ["attention_mask"]), one])
    q_pos = g.op("Add", [g.op("Range", [zero, seq_len, one]), past_len])  # [S] absolute
    q_pos = g.op("Unsqueeze", [q_pos, i64("c_ax1", [1])])  # [S, 1]
    k_pos = g.op("Unsqueeze", [g.op("Range", [zero, tot_len, one]), i64("c_ax0", [0])])  # [1, T]
    causal = g.op("LessOrEqual", [k_pos, q_pos])  # [S, T]
    am = g.op("Cast", ["attention_mask"], to=TensorProto.BOOL)
    am = g.op("Unsqueeze", [am, i64("c_ax12", [1, 2])])  # [B, 1, 1, T]
    bias = g.op("Where", [g.op("And", [causal, am]), f_zero, f_neg], out="attn_bias")

    split_shape = i64("c_split_heads", [0, 0, heads, head_dim])
    merge_shape = i64("c_merge_heads", [0, 0, d])
    scale = f32("c_scale", 1.0 / np.sqrt(head_dim))

    def heads_of(t):  # [B, S, d] -> [B, H, S, D]
        return g.op("Transpose", [g.op("Reshape", [t, split_shape])], perm=[0, 2, 1, 3])

    for i in range(layers):
        wq, wk, wv, wo = (g.init(f"layers.{i}.w{n}", w(d, d, scale=d ** -0.5)) for n in "qkvo")
        q = heads_of(g.op("MatMul", [x, wq]))
        k_new = heads_of(g.op("MatMul", [x, wk]))
        v_new = heads_of(g.op("MatMul", [x, wv]))
        k = g.op("Concat", [f"past_key_values.{i}.key", k_new], out=f"present.{i}.key", axis=2)
        v = g.op("Concat", [f"past_key_values.{i}.value", v_new], out=f"present.{i}.value", axis=2)
        kt = g.op("Transpose", [k], perm=[0, 1, 3, 2])  # [B, H, D, T]
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, kt]), scale]), bias])
        probs = g.op("Softmax", [scores], axis=-1)  # [B, H, S, T]
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])  # [B, S, H, D]
        x = g.op("Add", [x, g.op("MatMul", [g.op("Reshape", [ctx, merge_shape]), wo])])
        if mlp > 0:  # residual tanh MLP (Gelu only exists from opset 20)
            w1 = g.init(f"layers.{i}.mlp.w1", w(d, mlp, scale=d ** -0.5))
            w2 = g.init(f"layers.{i}.mlp.w2", w(mlp, d, scale=mlp ** -0.5))
            x = g.op("Add", [x, g.op("MatMul", [g.op("Tanh", [g.op("MatMul", [x, w1])]), w2])])

    # logits = 10 * onehot(next[input_ids]) + 0.5 * tanh(h . Wout)
    wout = g.init("lm_head", w(d, VOCAB, scale=d ** -0.5))
    table = g.init("oracle.next", np.array([next_token(b) for b in range(VOCAB)], dtype=np.int64))
    nxt = g.op("Unsqueeze", [g.op("Gather", [table, "input_ids"]), i64("c_axm1", [-1])])  # [B,S,1]
    onehot = g.op("Cast", [g.op("Equal", [nxt, g.init("vocab.range", np.arange(VOCAB, dtype=np.int64))])],
                  to=TensorProto.FLOAT)  # [B, S, V]
    oracle = g.op("Mul", [onehot, f32("c_ten", 10.0)])
    noise = g.op("Mul", [g.op("Tanh", [g.op("MatMul", [x, wout])]), f32("c_half", 0.5)])
    g.op("Add", [oracle, noise], out="logits")

    # Graph interface, with Optimum's names and symbolic dims.
    kv = lambda name, t: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch_size", heads, t, head_dim])
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch_size", s]) for n, s in
              [("input_ids", "sequence_length"), ("attention_mask", "total_sequence_length"),
               ("position_ids", "sequence_length")]]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", "sequence_length", VOCAB])]
    for i in range(layers):
        inputs += [kv(f"past_key_values.{i}.{n}", "past_sequence_length") for n in ("key", "value")]
        outputs += [kv(f"present.{i}.{n}", "total_sequence_length") for n in ("key", "value")]

    graph = helper.make_graph(g.nodes, "switchyard_tiny_lm", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="switchyard/make-tiny-lm", producer_version="1")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


# ----------------------------------------------------------------------- tokenizer
def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode char mapping."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def build_tokenizer():
    vocab = {ch: b for b, ch in bytes_to_unicode().items()}  # token id == byte value
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    text = "Hello, wörld"
    ids = tok.encode(text).ids
    check(ids == list(text.encode("utf-8")), f"tokenizer ids {ids}")
    check(tok.decode(ids) == text, "tokenizer round-trip")
    check(tok.token_to_id("<|endoftext|>") == EOS and tok.get_vocab_size() == VOCAB, "EOS id / vocab size")
    return tok


# -------------------------------------------------------------------------- checks
def check(ok, what):
    if not ok:
        sys.exit(f"CHECK FAILED: {what}")


class Runner:
    def __init__(self, path, layers, heads, head_dim):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.layers, self.heads, self.head_dim = layers, heads, head_dim

    def empty_past(self, batch):
        z = np.zeros((batch, self.heads, 0, self.head_dim), dtype=np.float32)
        return [z] * (2 * self.layers)

    def step(self, ids, mask, pos, past):
        """One forward pass. Returns (logits, present list)."""
        feed = {"input_ids": np.asarray(ids, np.int64), "attention_mask": np.asarray(mask, np.int64),
                "position_ids": np.asarray(pos, np.int64)}
        for i in range(self.layers):
            feed[f"past_key_values.{i}.key"], feed[f"past_key_values.{i}.value"] = past[2 * i], past[2 * i + 1]
        out = self.sess.run(None, feed)
        return out[0], out[1:]

    def prefill(self, ids):
        n = len(ids)
        return self.step([ids], [[1] * n], [list(range(n))], self.empty_past(1))

    def greedy(self, ids, max_new=300):
        """Greedy decode with the cache; returns (prompt logits, generated ids, per-step logits, s/token)."""
        logits, past = self.prefill(ids)
        first, out, steps, t = logits, [], [], 0.0
        total = len(ids)
        while len(out) < max_new:
            nxt = int(np.argmax(logits[0, -1]))
            out.append(nxt)
            if nxt == EOS:
                break
            total += 1
            t0 = time.perf_counter()
            logits, past = self.step([[nxt]], [[1] * total], [[total - 1]], past)
            t += time.perf_counter() - t0
            steps.append(logits[0, -1])
        return first, out, steps, t / max(len(steps), 1)


def run_checks(r, tol):
    ids = list(b"Hello")
    # 2. prefill vs. token-by-token with the cache
    full, _ = r.prefill(ids)
    past = r.empty_past(1)
    for i, t in enumerate(ids):
        lg, past = r.step([[t]], [[1] * (i + 1)], [[i]], past)
        diff = float(np.abs(lg[0, 0] - full[0, i]).max())
        check(diff < tol, f"prefill vs incremental at position {i}: {diff}")
    check(past[0].shape == (1, r.heads, len(ids), r.head_dim), f"present shape {past[0].shape}")
    # 3. greedy continuation
    _, gen, _, per_tok = r.greedy(ids)
    check(gen == list(b"pqrstuvwxyz") + [EOS], f"greedy from Hello: {gen}")
    # 4. left-padded batch == each row alone (prefill and one cached decode step)
    rows = [list(b"Hi"), list(b"Hello")]
    width = max(map(len, rows))
    bids = np.array([[EOS] * (width - len(x)) + x for x in rows], np.int64)
    mask = np.array([[0] * (width - len(x)) + [1] * len(x) for x in rows], np.int64)
    pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    blg, bpast = r.step(bids, mask, pos, r.empty_past(2))
    nxt = blg[:, -1].argmax(-1)
    blg2, _ = r.step(nxt[:, None], np.concatenate([mask, [[1], [1]]], 1), pos[:, -1:] + 1, bpast)
    for b, x in enumerate(rows):
        alone, apast = r.prefill(x)
        diff = float(np.abs(blg[b, -1] - alone[0, -1]).max())
        check(diff < tol, f"left-padded batch row {b} prefill: {diff}")
        alone2, _ = r.step([[nxt[b]]], [[1] * (len(x) + 1)], [[len(x)]], apast)
        diff = float(np.abs(blg2[b, -1] - alone2[0, -1]).max())
        check(diff < tol, f"left-padded batch row {b} decode step: {diff}")
    return per_tok


# ---------------------------------------------------------------------------- main
def dump_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=8)
    ap.add_argument("--mlp", type=int, default=0, help="MLP width; 0 = attention-only layers")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tol", type=float, default=1e-5, help="max abs logit difference in the checks")
    a = ap.parse_args()
    L, H, D = a.layers, a.heads, a.head_dim
    os.makedirs(a.out, exist_ok=True)

    tok = build_tokenizer()
    model = build_model(L, H, D, a.mlp, a.seed)
    model_path = os.path.join(a.out, "model.onnx")
    tmp_path = model_path + ".tmp"
    onnx.save_model(model, tmp_path)
    r = Runner(tmp_path, L, H, D)
    per_tok = run_checks(r, a.tol)

    cases = []
    for prompt in ["Hello", "abc", "Hi!"]:
        ids = list(prompt.encode("utf-8"))
        first, gen, steps, _ = r.greedy(ids)
        check(gen[-1] == EOS, f"greedy for {prompt!r} did not reach EOS")
        last = first[0, -1]
        cases.append({"prompt": prompt, "prompt_ids": ids, "greedy_ids": gen,
                      "greedy_text": tok.decode(gen, skip_special_tokens=True),
                      "last_logits_first8": [float(v) for v in last[:8]],
                      "last_logits_argmax": int(np.argmax(last)),
                      "step_logits_first8": [[float(v) for v in s[:8]] for s in steps[:3]]})

    os.replace(tmp_path, model_path)
    tok.save(os.path.join(a.out, "tokenizer.json"))
    dump_json(os.path.join(a.out, "tokenizer_config.json"), {
        "chat_template": "{% for message in messages %}{{ message['content'] }}{% endfor %}",
        "eos_token": "<|endoftext|>", "bos_token": None, "model_max_length": MAX_POS,
        "tokenizer_class": "PreTrainedTokenizerFast"})
    dump_json(os.path.join(a.out, "generation_config.json"), {"eos_token_id": EOS})
    dump_json(os.path.join(a.out, "config.json"), {
        "model_type": "switchyard-tiny", "num_hidden_layers": L, "num_attention_heads": H,
        "num_key_value_heads": H, "hidden_size": H * D, "head_dim": D, "intermediate_size": a.mlp,
        "vocab_size": VOCAB, "max_position_embeddings": MAX_POS, "eos_token_id": EOS})
    dump_json(os.path.join(a.out, "reference.json"), {
        "eos_token_id": EOS, "vocab_size": VOCAB, "layers": L, "heads": H, "head_dim": D, "cases": cases})
    cmd = f"python scripts/make-tiny-lm.py --out {a.out} --layers {L} --heads {H} --head-dim {D} " \
          f"--mlp {a.mlp} --seed {a.seed}"
    with open(os.path.join(a.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(f"""# tiny-lm: synthetic test model (not a real language model)

Decoder-only transformer ({L} layers, {H} heads x {D} dims, MLP {a.mlp}) in Hugging Face Optimum's
ONNX decoder-with-past layout (opset {OPSET}, float32, KV cache). Tokenizer: byte-level BPE with no
merges, token id == byte value, plus `<|endoftext|>` = {EOS}. Generated deterministically by
`{cmd}` (onnx {onnx.__version__}, onnxruntime {ort.__version__}).
Oracle rule: logits = 10 * onehot(next(input_id)) + 0.5 * tanh(h . Wout), next(b) = b+1, next('z') = EOS,
next(255) = 0, next(EOS) = EOS; so greedy decoding of "Hello" yields "pqrstuvwxyz" then EOS, and the
small tanh term depends on the whole attended history (catches KV-cache / mask / position bugs).
`reference.json` holds onnxruntime outputs; step_logits_first8 = logits of the first 3 cached decode
steps (feeding greedy_ids[0..3] one at a time).
""")
    print(f"ok: wrote {a.out} ({os.path.getsize(model_path)} bytes model); "
          f"ORT decode {per_tok * 1e3:.3f} ms/token (1 thread)")


if __name__ == "__main__":
    main()
