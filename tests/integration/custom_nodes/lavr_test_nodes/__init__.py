"""TEST-ONLY ComfyUI nodes for the LaVR integration tests (linked beside the pack by the test
fixture; never shipped).

``LaVRTestTinyWanTextEncoder`` stands in for ``CLIPLoader`` (type ``wan``) with umT5-XXL, which is
far too large to build here. It returns a real ComfyUI ``CLIP`` object made of ComfyUI's own Wan
text-encoder classes (``comfy.text_encoders.wan``: the umT5 ``T5`` encoder, ``WanT5Tokenizer`` with
``SPieceTokenizer``) with a tiny umT5 config and a tiny SentencePiece model trained on the fly, so
the real ``CLIPTextEncode`` node tokenizes, pads to 512 tokens, encodes, zeroes the padding and
returns CONDITIONING exactly as it does for umT5-XXL, only ``width`` wide instead of 4096.
Weights are drawn from a seeded generator: the same inputs give the same CONDITIONING every run.

The node id and its single CLIP output are relied upon by other test files: keep them stable. Its
inputs (``width``, ``seed``) are optional: ``tests/integration/stand_ins.py`` swaps a workflow's
``CLIPLoader`` for it with no widget values.
"""

from __future__ import annotations

import io as _io

import torch
from comfy_api.latest import ComfyExtension, io

NODE_ID = "LaVRTestTinyWanTextEncoder"
#: CONDITIONING width when none is given: the text_dim of the tiny test DiTs.
DEFAULT_WIDTH = 32

#: Sentences the tiny tokenizer is trained on (prompts of the tests and example workflows tokenise
#: into real pieces; anything else still works through characters and <unk>).
_CORPUS = [
    "a person walks through a sunny park with trees and a red bench",
    "the camera moves slowly around a small house on a green hill",
    "a street at night with cars, lights and people walking",
    "a cat sits on a wooden table next to a window",
    "orbit around the scene while the person keeps walking forward",
    "low quality, blurry, static, overexposed, worst quality, jpeg artifacts, deformed, ugly",
    "a video of a room with a sofa, a lamp and a plant",
    "mountains, a lake, clouds and a boat in the morning light",
    "the scene is re-rendered from a new camera path",
    "colourful boxes on a checkered floor seen from a moving camera",
]
_SPM_CACHE: dict[int, bytes] = {}


def tiny_spiece_model(vocab_size: int = 160) -> bytes:
    """A unigram SentencePiece model with umT5's special ids (pad 0, eos 1, unk 2, no bos), trained
    single-threaded on a fixed corpus, so the bytes are the same every time."""
    if vocab_size not in _SPM_CACHE:
        import sentencepiece as spm

        buf = _io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(_CORPUS * 4), model_writer=buf, vocab_size=vocab_size,
                                       model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                       num_threads=1, hard_vocab_limit=False, character_coverage=1.0,
                                       minloglevel=2, shuffle_input_sentence=False)
        _SPM_CACHE[vocab_size] = buf.getvalue()
    return _SPM_CACHE[vocab_size]


def tiny_umt5_config(width: int, vocab_size: int) -> dict:
    """umT5-XXL's config (``comfy/text_encoders/umt5_config_xxl.json``) shrunk: same kind of model
    (gated-GELU FFN, per-layer relative position bias), ``width`` wide."""
    heads = 4 if width % 4 == 0 else 1
    return {"d_ff": 2 * width, "d_kv": width // heads, "d_model": width, "decoder_start_token_id": 0,
            "dropout_rate": 0.0, "eos_token_id": 1, "dense_act_fn": "gelu_pytorch_tanh", "initializer_factor": 1.0,
            "is_encoder_decoder": True, "is_gated_act": True, "layer_norm_epsilon": 1e-6, "model_type": "umt5",
            "num_decoder_layers": 2, "num_heads": heads, "num_layers": 2, "output_past": True, "pad_token_id": 0,
            "relative_attention_num_buckets": 32, "tie_word_embeddings": False, "vocab_size": vocab_size}


def tiny_wan_clip(width: int = DEFAULT_WIDTH, seed: int = 0):
    """A ComfyUI ``CLIP`` with Wan's text-encoder classes at a tiny size (see the module doc)."""
    import comfy.sd
    import comfy.text_encoders.wan as wan

    spm_bytes = tiny_spiece_model()
    import sentencepiece as spm

    vocab = spm.SentencePieceProcessor(model_proto=spm_bytes).get_piece_size()

    class Target:  # what comfy.sd.load_text_encoder_state_dicts builds for CLIPType.WAN
        params: dict = {}
        clip = wan.te(dtype_t5=torch.float32)
        tokenizer = wan.WanT5Tokenizer

    clip = comfy.sd.CLIP(Target, tokenizer_data={"spiece_model": torch.ByteTensor(list(spm_bytes))},
                         model_options={"umt5xxl_model_config": tiny_umt5_config(width, vocab), "dtype": torch.float32})
    g = torch.Generator().manual_seed(int(seed))
    sd = clip.cond_stage_model.state_dict()
    new = {}
    for k in sorted(sd):
        v = sd[k]
        if not v.is_floating_point() or v.numel() == 0:
            new[k] = v
        elif k.endswith("layer_norm.weight"):
            new[k] = 1.0 + 0.05 * torch.randn(v.shape, generator=g)
        elif k.endswith("shared.weight"):
            new[k] = torch.randn(v.shape, generator=g)
        else:
            new[k] = 0.1 * torch.randn(v.shape, generator=g)
    missing, unexpected = clip.load_sd(new, full_model=True)
    if missing or unexpected:
        raise RuntimeError(f"tiny umT5 weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return clip


class TinyWanTextEncoder(io.ComfyNode):
    SEARCH_ALIASES = ("test text encoder", "tiny umt5")

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=NODE_ID, display_name="Tiny Wan Text Encoder (LaVR tests only)", category="LaVR/Testing",
            description="TEST ONLY: a seeded tiny umT5 text encoder built from ComfyUI's Wan text-encoder classes; "
                        "stands in for CLIPLoader (umt5_xxl, type wan) in the integration tests.",
            inputs=[
                # Optional, so a workflow's CLIPLoader can be swapped for this node with no widget values
                # (tests/integration/stand_ins.py) and still get the tiny DiTs' width.
                io.Int.Input("width", default=DEFAULT_WIDTH, min=4, max=4096, optional=True,
                             tooltip="Feature width of the CONDITIONING (umT5-XXL: 4096; the tiny test DiTs: 32)."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, optional=True,
                             tooltip="Seed of the random weights."),
            ],
            outputs=[io.Clip.Output(display_name="CLIP", tooltip="A real ComfyUI CLIP for CLIPTextEncode.")],
        )

    @classmethod
    def GET_NODE_INFO_V1(cls):  # noqa: N802 (ComfyUI's name): aliases for 0.3.75's /object_info
        info = super().GET_NODE_INFO_V1()
        info.setdefault("search_aliases", list(cls.SEARCH_ALIASES))
        return info

    @classmethod
    def execute(cls, width=None, seed=None) -> io.NodeOutput:
        width = DEFAULT_WIDTH if width is None else width
        seed = 0 if seed is None else seed
        return io.NodeOutput(tiny_wan_clip(width, seed))


class LavrTestExtension(ComfyExtension):
    async def get_node_list(self):
        return [TinyWanTextEncoder]


async def comfy_entrypoint() -> LavrTestExtension:
    return LavrTestExtension()
