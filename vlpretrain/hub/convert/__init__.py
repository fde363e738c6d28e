"""Converters from original and third-party checkpoints to the package's layout (``vlpretrain convert --from``).

Every converter reads weights safely (safetensors, ``torch.load(..., weights_only=True)`` or ``.npz`` without
pickles), renames keys, joins query/key/value matrices into the fused ``qkv`` projections, reads the sizes off the
tensors, and checks that every tensor of the target model is provided with the right shape before anything is
written (``common.py``). One module per source family imports those shared pieces; ``common`` imports no family.

``CONVERTERS`` maps each ``--from`` name to ``converter(source, output_dir, **options) -> Path``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .actbert import convert_actbert
from .bottom_up_attention import convert_bua_caffe, convert_frcnn_vg
from .common import load_state_dict, write_converted
from .lxmert import convert_lxmert
from .s3d import convert_s3d_howto100m
from .two_stream import convert_ernie_vil, convert_vilbert
from .video import convert_hero, convert_univl
from .vl_bert import convert_vl_bert

CONVERTERS: dict[str, Callable[..., Path]] = {
    "lxmert-hf": lambda source, output_dir, **overrides: convert_lxmert(source, output_dir, False, overrides),
    "lxmert-original": lambda source, output_dir, **overrides: convert_lxmert(source, output_dir, True, overrides),
    "vl-bert": convert_vl_bert,
    "vilbert": convert_vilbert,
    "ernie-vil": convert_ernie_vil,
    "univl": convert_univl,
    "hero": convert_hero,
    "actbert": convert_actbert,
    "s3d-howto100m": convert_s3d_howto100m,
    "frcnn-vg": convert_frcnn_vg,
    "bua-caffe": convert_bua_caffe,
}

__all__ = [
    "CONVERTERS",
    "convert_actbert",
    "convert_bua_caffe",
    "convert_ernie_vil",
    "convert_frcnn_vg",
    "convert_hero",
    "convert_lxmert",
    "convert_s3d_howto100m",
    "convert_univl",
    "convert_vilbert",
    "convert_vl_bert",
    "load_state_dict",
    "write_converted",
]
