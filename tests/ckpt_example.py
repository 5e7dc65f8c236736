"""Load a nightwatch checkpoint (HDF5) into numpy arrays named like a
PyTorch GPT-2 state_dict. Needs h5py and numpy.

    python3 ckpt_example.py CKPT [--dump OUT.bin]
"""
import sys

import h5py
import numpy as np


def load_checkpoint(path):
    """Returns (state_dict, optimizer, settings, config_text).

    state_dict: {"transformer.wte.weight": array (vocab, n_embd), ...} in the
    model's order; optimizer: {"exp_avg": {...}, "exp_avg_sq": {...}} or None
    before the first step; settings: the root attributes (step, data_index,
    n_layer, ...); config_text: the run's settings as INI text.
    """
    with h5py.File(path, "r") as f:
        if f.attrs.get("complete") != 1:
            raise ValueError(f"{path}: incomplete checkpoint")
        if f.attrs["format_version"] != 1:
            raise ValueError(f"{path}: unknown format_version")
        names = [n.decode() for n in f["tensor_names"][()]]
        state = {n: f["model"][n][()] for n in names}
        optimizer = None
        if "optimizer" in f:
            optimizer = {
                m: {n: f["optimizer"][m][n][()] for n in names}
                for m in ("exp_avg", "exp_avg_sq")
            }
        settings = {k: v.item() for k, v in f.attrs.items()}
        config_text = f["config"][()].decode()
    # Into PyTorch: {k: torch.from_numpy(v) for k, v in state.items()}.
    # The matrices are nn.Linear layout (out, in). Hugging Face's GPT-2 uses
    # Conv1D, which stores (in, out): transpose attn.c_attn.weight,
    # attn.c_proj.weight, mlp.c_fc.weight and mlp.c_proj.weight for it (and
    # its lm_head.weight is transformer.wte.weight, tied).
    return state, optimizer, settings, config_text


if __name__ == "__main__":
    state, optimizer, settings, config_text = load_checkpoint(sys.argv[1])
    for key in ("step", "tokens_seen", "data_index", "num_params"):
        print(key, settings[key])
    for name, a in state.items():
        print(name, a.dtype, "x".join(map(str, a.shape)), repr(float(a.flat[0])),
              repr(float(a.flat[-1])), repr(float(a.sum(dtype=np.float64))))
    print("config_bytes", len(config_text))
    if len(sys.argv) > 3 and sys.argv[2] == "--dump":
        # Every value in file order: parameters, then both moments.
        groups = [state] + ([optimizer["exp_avg"], optimizer["exp_avg_sq"]]
                            if optimizer else [])
        flat = np.concatenate([a.ravel() for g in groups for a in g.values()])
        flat.astype("<f4").tofile(sys.argv[3])
