"""The authors' DETR-R50 (Carion et al., ECCV 2020) for full mode, defined here, weights from their URL.

Loaded the way torchvision loads its own weights: the architecture is this module's
:class:`DETRResNet50` (no code is fetched from anywhere), the COCO weights come from
:data:`DETR_R50_URL` into torch hub's cache, their file name carries the first hex digits of the
file's sha256 (``e632da11``), which torch hub checks (``check_hash=True``), and they are read
with ``torch.load(weights_only=True)``. The module names follow the published checkpoint's keys
(``backbone.0.body.*``, ``transformer.encoder.layers.*``, ``class_embed``, ``bbox_embed.layers.*``,
``query_embed``, ``input_proj``), so the state dict loads strictly.

The network, as in the paper: a ResNet-50 with frozen BatchNorm (stride 32, 2048 channels), a
1x1 projection to 256 channels, 2-D sine positional encodings (normalised coordinates, 128
frequencies per axis), a post-norm transformer of 6 encoder and 6 decoder layers (8 heads,
feed-forward 2048) whose positional encodings are added to the queries and keys of every
attention, 100 learned object queries, and shared heads after every decoder layer: 92 class
logits (COCO's category ids 0..90, then "no object") and a 3-layer MLP for the box.
"""

from __future__ import annotations

import http.client
import math
import urllib.error

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FrozenBatchNorm2d

from .backbones import WeightsUnavailable, cached_weights_path

DETR_R50_URL = "https://dl.fbaipublicfiles.com/detr/detr-r50-e632da11.pth"  # name: <model>-<sha256 prefix>.pth
COCO_NUM_LOGITS = 92  # COCO category ids 0..90, then "no object"


def sine_position_encoding(h: int, w: int, num_freqs: int = 128, temperature: float = 10000.0,
                           device: torch.device | str | None = None) -> torch.Tensor:
    """DETR's 2-D sine encoding of an ``h x w`` feature map without padding.

    Row ``i`` and column ``j`` are numbered from 1, divided by the map's height / width and
    multiplied by 2 pi; each is encoded by ``num_freqs`` interleaved sines and cosines.

    Args:
        h, w: the feature map's size.
        num_freqs: channels per axis (half of the model width).
        temperature: base of the frequencies.
        device: where to build it.

    Returns:
        (2 * num_freqs, h, w): the y channels first, then the x channels.
    """
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, h + 1, dtype=torch.float32, device=device)[:, None].expand(h, w) / (h + eps) * scale
    x = torch.arange(1, w + 1, dtype=torch.float32, device=device)[None, :].expand(h, w) / (w + eps) * scale
    k = torch.arange(num_freqs, dtype=torch.float32, device=device)
    freqs = temperature ** (2 * (k // 2) / num_freqs)  # (num_freqs,)

    def encode(coord: torch.Tensor) -> torch.Tensor:  # (h, w) -> (h, w, num_freqs)
        angles = coord[..., None] / freqs
        return torch.stack([angles[..., 0::2].sin(), angles[..., 1::2].cos()], dim=-1).flatten(-2)

    return torch.cat([encode(y), encode(x)], dim=-1).permute(2, 0, 1)


class EncoderLayer(nn.Module):
    """Post-norm self-attention and feed-forward; the positional encoding joins queries and keys only."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(d_model, dim_feedforward), nn.Linear(dim_feedforward, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """src (B, HW, d), pos (1 or B, HW, d) -> (B, HW, d)."""
        q = k = src + pos
        src = self.norm1(src + self.self_attn(q, k, src, need_weights=False)[0])
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class DecoderLayer(nn.Module):
    """Post-norm self-attention among queries, cross-attention to the image, feed-forward.

    ``multihead_attn`` (the cross-attention) returns its head-averaged weights (B, Q, HW), so a
    forward hook on it sees where each query looks.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(d_model, dim_feedforward), nn.Linear(dim_feedforward, d_model)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor,
                query_pos: torch.Tensor) -> torch.Tensor:
        """tgt (B, Q, d), memory (B, HW, d), pos (1 or B, HW, d), query_pos (B, Q, d) -> (B, Q, d)."""
        q = k = tgt + query_pos
        tgt = self.norm1(tgt + self.self_attn(q, k, tgt, need_weights=False)[0])
        attended = self.multihead_attn(tgt + query_pos, memory + pos, memory, need_weights=True)[0]
        tgt = self.norm2(tgt + attended)
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class Encoder(nn.Module):
    def __init__(self, num_layers: int, d_model: int, nhead: int, dim_feedforward: int):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, nhead, dim_feedforward) for _ in range(num_layers))

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, pos)
        return src


class Decoder(nn.Module):
    """Decoder layers, each output passed through one shared final LayerNorm (``norm``)."""

    def __init__(self, num_layers: int, d_model: int, nhead: int, dim_feedforward: int):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(d_model, nhead, dim_feedforward) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, memory: torch.Tensor, pos: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        """-> (L, B, Q, d): every layer's normalised output, for the auxiliary heads."""
        tgt, outputs = torch.zeros_like(query_pos), []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos, query_pos)
            outputs.append(self.norm(tgt))
        return torch.stack(outputs)


class Transformer(nn.Module):
    def __init__(self, d_model: int = 256, nhead: int = 8, num_layers: int = 6, dim_feedforward: int = 2048):
        super().__init__()
        self.encoder = Encoder(num_layers, d_model, nhead, dim_feedforward)
        self.decoder = Decoder(num_layers, d_model, nhead, dim_feedforward)


class MLP(nn.Module):
    """``len(dims) - 1`` linear layers with ReLU between them (the box head)."""

    def __init__(self, *dims: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class ResNet50Trunk(nn.Module):
    """torchvision's ResNet-50 up to ``layer4`` with frozen BatchNorm: (B, 3, H, W) -> {"0": (B, 2048, H/32, W/32)}."""

    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        self.body = IntermediateLayerGetter(resnet, return_layers={"layer4": "0"})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.body(images)


class DETRResNet50(nn.Module):
    """DETR with a ResNet-50 backbone, laid out as the authors' checkpoint (see the module doc).

    ``forward(images (B, 3, H, W), ImageNet-normalised)`` returns ``{"pred_logits": (B, Q, 92),
    "pred_boxes": (B, Q, 4) normalised cxcywh, "aux_outputs": [the same for decoder layers 1..5]}``,
    the format of :func:`course_utils.models.detr.postprocess`.

    Args:
        num_logits: class logits per query (92 for COCO: ids 0..90, then "no object").
        num_queries: object queries (100).
    """

    def __init__(self, num_logits: int = COCO_NUM_LOGITS, num_queries: int = 100, d_model: int = 256):
        super().__init__()
        self.backbone = nn.ModuleList([ResNet50Trunk()])
        self.input_proj = nn.Conv2d(2048, d_model, kernel_size=1)
        self.transformer = Transformer(d_model)
        self.query_embed = nn.Embedding(num_queries, d_model)
        self.class_embed = nn.Linear(d_model, num_logits)
        self.bbox_embed = MLP(d_model, d_model, d_model, 4)

    def forward(self, images: torch.Tensor) -> dict:
        features = self.input_proj(self.backbone[0](images)["0"])  # (B, d, h, w)
        b, d, h, w = features.shape
        pos = sine_position_encoding(h, w, d // 2, device=features.device).flatten(1).T[None]  # (1, h*w, d)
        memory = self.transformer.encoder(features.flatten(2).transpose(1, 2), pos)  # (B, h*w, d)
        query_pos = self.query_embed.weight[None].expand(b, -1, -1)  # (B, Q, d)
        hs = self.transformer.decoder(memory, pos, query_pos)  # (L, B, Q, d)
        logits, boxes = self.class_embed(hs), self.bbox_embed(hs).sigmoid()
        aux = [{"pred_logits": c, "pred_boxes": bx} for c, bx in zip(logits[:-1], boxes[:-1])]
        return {"pred_logits": logits[-1], "pred_boxes": boxes[-1], "aux_outputs": aux}


def load_detr_resnet50(*, progress: bool = True) -> DETRResNet50:
    """The authors' DETR-R50 with its COCO weights (42.0 AP on COCO val2017), in eval mode.

    The weights are downloaded once from :data:`DETR_R50_URL` into torch hub's cache, checked
    against the sha256 prefix in their file name and read with ``torch.load(weights_only=True)``;
    no code is downloaded. Its ``pred_logits`` are (B, 100, 92): COCO's original category ids
    0..90, then "no object".

    Raises:
        WeightsUnavailable: the file could not be downloaded (the message names the URL and where
            to put the file when fetched by hand).
        RuntimeError: the downloaded file's sha256 does not match its name.
    """
    try:
        checkpoint = torch.hub.load_state_dict_from_url(DETR_R50_URL, map_location="cpu", progress=progress,
                                                        check_hash=True, weights_only=True)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise WeightsUnavailable(
            f"could not download the DETR-R50 weights from {DETR_R50_URL} ({getattr(err, 'reason', err)}). To "
            f"fetch by hand: download that URL and save it as {cached_weights_path(DETR_R50_URL)}") from err
    model = DETRResNet50()
    model.load_state_dict(checkpoint["model"])
    return model.eval()


__all__ = ["COCO_NUM_LOGITS", "DETRResNet50", "DETR_R50_URL", "load_detr_resnet50", "sine_position_encoding"]
