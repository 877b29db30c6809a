"""qwen_configs.py: a published flat config.json of Qwen2-VL or Qwen2.5-VL (examples/*.json) as
transformers' config object, and what differs between the two families for the scripts that
build random 7B checkpoints from it: the model class, how the vision config is spelled, the
shapes the published 7B must come out with, and how many weight elements bitsandbytes quantizes
at 7B. Used by tests/reference/teacher_forced.py and bench/anchors/hf_qwen2_5_vl.py on the GPU
machine (transformers 5.17); the model_type look-up needs only the standard library.
"""
import json

# The published Qwen2-VL-7B config.json names only in_chans / the patch size of its vision tower;
# the rest is the 7B's. (Qwen2.5-VL's config.json spells its tower out.)
QWEN2_VL_VISION_7B = dict(depth=32, embed_dim=1280, mlp_ratio=4, num_heads=16, in_channels=3,
                          patch_size=14, spatial_merge_size=2, temporal_patch_size=2)

# Linear weight elements bitsandbytes quantizes at 7B: the decoder's 6,525,288,448 (the same in
# both) plus the vision tower's. Qwen2-VL: 32 x (qkv 1280x3840 + proj 1280x1280 + fc1, fc2
# 1280x5120) + merger 5120x5120 + 5120x3584 = 673,710,080. Qwen2.5-VL: 32 x (qkv + proj + gate,
# up, down 1280x3420) + the same merger = 674,529,280.
FAMILIES = {
    "qwen2_vl": dict(model_class="Qwen2VLForConditionalGeneration", config_class="Qwen2VLConfig",
                     quantized_elements_7b=7_198_998_528),
    "qwen2_5_vl": dict(model_class="Qwen2_5_VLForConditionalGeneration",
                       config_class="Qwen2_5_VLConfig", quantized_elements_7b=7_199_817_728),
}

# (hidden, layers, heads, kv heads, intermediate, vocab) of both 7Bs' decoders
TEXT_7B = (3584, 28, 28, 4, 18944, 152064)
# the vision tower: (depth, width, heads, merger output) and, for Qwen2.5-VL, (MLP width, window
# in pixels, the blocks with full attention)
VISION_7B = {"qwen2_vl": (32, 1280, 16, 3584),
             "qwen2_5_vl": (32, 1280, 16, 3584, 3420, 112, [7, 15, 23, 31])}


def model_type_of(path):
    """The model_type of a config.json; ValueError for a family this module does not know."""
    with open(path) as f:
        t = json.load(f).get("model_type")
    if t not in FAMILIES:
        raise ValueError(f"{path}: model_type {t!r}; known: {', '.join(FAMILIES)}")
    return t


def model_class(model_type):
    import transformers
    return getattr(transformers, FAMILIES[model_type]["model_class"])


def published_config(path):
    """The flat published config.json -> (transformers config, model_type). Qwen2-VL: the vision
    tower's 7B defaults filled in and its hidden_size set to the merger's output (the decoder
    width), as transformers' Qwen2VLVisionConfig spells it. Qwen2.5-VL: the vision config as
    published (hidden_size is the tower's width, out_hidden_size the merger's output)."""
    import transformers
    model_type = model_type_of(path)
    with open(path) as f:
        raw = json.load(f)
    for k in ("transformers_version", "architectures", "torch_dtype"):
        raw.pop(k, None)
    vision = dict(raw.pop("vision_config", {}))
    for k in ("model_type", "in_chans", "spatial_patch_size"):  # in_channels defaults to 3
        vision.pop(k, None)
    if model_type == "qwen2_vl":
        for k, v in QWEN2_VL_VISION_7B.items():
            vision.setdefault(k, v)
        vision["hidden_size"] = raw["hidden_size"]
    cls = getattr(transformers, FAMILIES[model_type]["config_class"])
    return cls(vision_config=vision, **raw), model_type


def shapes(cfg, model_type):
    """(text shapes, vision shapes) as transformers read them, in the order of TEXT_7B and
    VISION_7B."""
    t, v = cfg.get_text_config(), cfg.vision_config
    text = (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads,
            t.intermediate_size, t.vocab_size)
    if model_type == "qwen2_vl":
        return text, (v.depth, v.embed_dim, v.num_heads, v.hidden_size)
    return text, (v.depth, v.hidden_size, v.num_heads, v.out_hidden_size, v.intermediate_size,
                  v.window_size, list(v.fullatt_block_indexes))


def check_7b(cfg, model_type, path):
    """None when transformers read the published 7B's shapes from `path`, else what differs."""
    got = shapes(cfg, model_type)
    want = (TEXT_7B, VISION_7B[model_type])
    if got != want:
        return f"{path}: transformers read shapes {got}, expected the {model_type} 7B's {want}"
    return None
