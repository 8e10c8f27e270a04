"""A small DETR (Carion et al., *End-to-End Object Detection with Transformers*, ECCV 2020) for CPU.

    model = build_small_detr(num_classes=3, num_queries=9)
    out = model(images)              # {"pred_logits": (B, Q, C + 1), "pred_boxes": (B, Q, 4), "aux_outputs": [...]}
    indices = hungarian_match(out["pred_logits"], out["pred_boxes"], targets)
    losses = set_criterion(out, targets, num_classes=3)
    detections = postprocess(out, image_size=(64, 64))   # torchvision-style dicts, xyxy pixels

A conv backbone turns the image into an ``h x w`` feature map; a transformer encoder mixes its
``h * w`` tokens (with 2-D sine positional encodings); a decoder turns a fixed set of ``Q`` learned
*object queries* into ``Q`` box predictions, each a class (``num_classes`` objects + 1 "no object")
and a normalised ``(cx, cy, w, h)`` box. Training matches predictions to ground truth one-to-one
(Hungarian algorithm), so there are no anchors and no NMS.

Three accelerants keep the DETR idea and make it train in minutes on small synthetic data:

* every query owns a learned **reference point**; its positional query is an MLP of the point's sine
  encoding and the box head predicts the centre as an offset from it in logit space (DAB-DETR); each
  decoder layer starts from the previous layer's boxes (iterative refinement, Deformable DETR);
* a **Gaussian spatial prior** around the reference point, as wide as the current box, is added to
  the cross-attention logits (SMCA, Gao et al., ICCV 2021; ``spatial_prior=False`` turns it off);
* **auxiliary losses**: the prediction heads (shared) are applied after every decoder layer, and
  each layer's output is matched and penalised on its own.

Targets everywhere are dicts with ``"boxes"`` (N, 4) **normalised cxcywh** in [0, 1] and
``"labels"`` (N,) int64 in ``0..num_classes-1``; use :func:`detr_targets` to build them from the
shapes' torchvision-style targets (xyxy pixels, labels from 1). Class index ``num_classes`` is
"no object".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchvision import ops

from ..tensors import plain

# --------------------------------------------------------------------------- model


class SineEmbedding2d(nn.Module):
    """The 2-D sine positional encoding of DETR: half the channels encode y, half x.

    Args:
        d_model: channels of the encoding (even).
        temperature: the base of the frequencies, as in "Attention is all you need".
    """

    def __init__(self, d_model: int, temperature: float = 10000.0):
        super().__init__()
        if d_model % 4:
            raise ValueError(f"d_model must be a multiple of 4, got {d_model}")
        self.d_model, self.temperature = d_model, temperature

    def encode_points(self, points: torch.Tensor) -> torch.Tensor:
        """points (..., 2) as (x, y) in [0, 1] -> (..., d_model): y's half first, then x's."""
        half = self.d_model // 2
        dim = torch.arange(half, device=points.device, dtype=torch.float32)
        freq = self.temperature ** (2 * (dim // 2) / half)  # (half,)
        angles = points[..., None] * 2 * math.pi / freq  # (..., 2, half)
        enc = torch.stack([angles[..., 0::2].sin(), angles[..., 1::2].cos()], dim=-1).flatten(-2)  # (..., 2, half)
        return torch.cat([enc[..., 1, :], enc[..., 0, :]], dim=-1)  # (..., d)

    def forward(self, h: int, w: int, device=None) -> torch.Tensor:
        """The encoding of the centres of an ``h x w`` grid, (h * w, d_model), row-major like ``flatten(2)``."""
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h  # (h,)
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w  # (w,)
        grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)  # (h, w, 2) as (x, y)
        return self.encode_points(grid.reshape(h * w, 2))  # (h*w, d)


class DecoderLayer(nn.Module):
    """One DETR decoder layer (post-norm): self-attention among queries, cross-attention to the
    image tokens, feed-forward. Keeps its last cross-attention map in ``self.cross_attention``
    (B, Q, h*w), averaged over heads, for plots."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d_model, dim_feedforward), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(dim_feedforward, d_model))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.cross_attention: torch.Tensor | None = None

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        """tgt (B, Q, d), query_pos (B, Q, d), memory (B, h*w, d), memory_pos (1 or B, h*w, d),
        attn_bias (B * nhead, Q, h*w) added to the cross-attention logits (or None) -> (B, Q, d)."""
        q = k = tgt + query_pos
        tgt = self.norm1(tgt + self.self_attn(q, k, tgt, need_weights=False)[0])
        out, weights = self.cross_attn(tgt + query_pos, memory + memory_pos, memory, attn_mask=attn_bias,
                                       need_weights=True)
        self.cross_attention = weights.detach()  # (B, Q, h*w)
        tgt = self.norm2(tgt + out)
        return self.norm3(tgt + self.ffn(tgt))


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def conv_backbone(widths: tuple[int, ...] = (32, 64, 128)) -> nn.Sequential:
    """A from-scratch conv net of stride ``2 ** len(widths)``: one stride-2 conv then a stride-1 conv per width."""
    layers: list[nn.Module] = []
    c_in = 3
    for c in widths:
        layers += [_conv(c_in, c, 2), _conv(c, c, 1)]
        c_in = c
    net = nn.Sequential(*layers)
    net.out_channels = c_in
    return net


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """logit(x), clamped so that 0 and 1 stay finite."""
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


class SmallDETR(nn.Module):
    """DETR with a small backbone, reference points and auxiliary outputs.

    Args:
        num_classes: object classes (the "no object" class is added: logits have ``num_classes + 1``).
        num_queries: the fixed number of predictions per image.
        backbone: a module (B, 3, H, W) -> (B, C, h, w) with attribute ``out_channels``
            (default: :func:`conv_backbone`, stride 8).
        d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout: the transformer.
        spatial_prior: add the Gaussian prior around each query's reference point to the decoder's
            cross-attention logits (SMCA); the reference points start on a grid (a square number of
            queries covers the image evenly).

    ``forward(images (B, 3, H, W))`` returns ``{"pred_logits": (B, Q, C + 1), "pred_boxes": (B, Q, 4)
    normalised cxcywh, "aux_outputs": [the same for each earlier decoder layer]}``. After a forward
    pass ``model.cross_attention()`` gives each decoder layer's cross-attention (L, B, Q, h, w).
    """

    def __init__(self, num_classes: int, num_queries: int = 9, *, backbone: nn.Module | None = None,
                 d_model: int = 64, nhead: int = 4, num_encoder_layers: int = 2, num_decoder_layers: int = 3,
                 dim_feedforward: int = 128, dropout: float = 0.0, spatial_prior: bool = True):
        super().__init__()
        self.nhead, self.spatial_prior = nhead, spatial_prior
        if num_classes < 1 or num_queries < 1:
            raise ValueError(f"num_classes and num_queries must be >= 1, got {num_classes}, {num_queries}")
        self.num_classes, self.num_queries = num_classes, num_queries
        self.backbone = backbone if backbone is not None else conv_backbone()
        self.input_proj = nn.Conv2d(self.backbone.out_channels, d_model, 1)
        self.pos_embed = SineEmbedding2d(d_model)
        enc_layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(enc_layer, num_encoder_layers, enable_nested_tensor=False)
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_decoder_layers))
        self.query_embed = nn.Embedding(num_queries, d_model)  # the learned object queries (content)
        self.reference_points = nn.Embedding(num_queries, 2)  # logits of each query's (cx, cy)
        side = math.ceil(math.sqrt(num_queries))  # start on a grid over the image
        grid = (torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="xy"), -1)
                .reshape(-1, 2)[:num_queries].float() + 0.5) / side
        self.reference_points.weight.data.copy_(inverse_sigmoid(grid))
        self.ref_to_query_pos = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, d_model))
        self.class_head = nn.Linear(d_model, num_classes + 1)  # shared by all decoder layers
        self.box_head = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, d_model), nn.ReLU(),
                                      nn.Linear(d_model, 4))
        nn.init.zeros_(self.box_head[-1].weight)
        nn.init.constant_(self.box_head[-1].bias, 0.0)
        self.feature_size: tuple[int, int] | None = None

    def _heads(self, hs: torch.Tensor, ref_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """hs (B, Q, d), ref_logits (B, Q, 2) logits of the reference centres -> class logits and boxes."""
        delta = self.box_head(hs)  # (B, Q, 4)
        centre = (delta[..., :2] + ref_logits).sigmoid()  # (B, Q, 2): an offset from the reference point
        size = (delta[..., 2:] - 1.5).sigmoid()  # (B, Q, 2): starts near 0.18 of the image
        return {"pred_logits": self.class_head(hs), "pred_boxes": torch.cat([centre, size], dim=-1)}

    def _spatial_bias(self, centre: torch.Tensor, sigma: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """A Gaussian prior around each query's reference point, added to the cross-attention logits
        (SMCA: Gao et al., ICCV 2021). centre, sigma (B, Q, 2) in [0, 1] -> (B * nhead, Q, h*w)."""
        grid = self.pos_embed_grid(h, w, centre.device)  # (h*w, 2) as (x, y)
        z = (grid[None, None] - centre[:, :, None]) / sigma[:, :, None]  # (B, Q, h*w, 2)
        bias = -0.5 * (z ** 2).sum(-1)  # (B, Q, h*w)
        return bias.repeat_interleave(self.nhead, dim=0)  # (B * nhead, Q, h*w)

    @staticmethod
    def pos_embed_grid(h: int, w: int, device=None) -> torch.Tensor:
        """(h*w, 2): the (x, y) centres of the feature-map cells in [0, 1], row-major."""
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        return torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1).reshape(h * w, 2)

    def forward(self, images: torch.Tensor) -> dict:
        if isinstance(images, (list, tuple)):
            images = torch.stack(list(images))
        features = self.input_proj(self.backbone(images))  # (B, d, h, w)
        b, d, h, w = features.shape
        self.feature_size = (h, w)
        pos = self.pos_embed(h, w, features.device)[None]  # (1, h*w, d)
        memory = self.encoder(features.flatten(2).transpose(1, 2) + pos)  # (B, h*w, d)
        ref_logits = self.reference_points.weight[None].expand(b, -1, -1)  # (B, Q, 2)
        sigma = torch.full_like(ref_logits, 0.25)  # (B, Q, 2): the first layer looks around its region
        tgt = self.query_embed.weight[None].expand(b, -1, -1)  # (B, Q, d)
        outputs = []
        for layer in self.decoder_layers:
            centre = ref_logits.sigmoid()  # (B, Q, 2)
            query_pos = self.ref_to_query_pos(self.pos_embed.encode_points(centre))  # (B, Q, d)
            bias = self._spatial_bias(centre, sigma, h, w) if self.spatial_prior else None
            tgt = layer(tgt, query_pos, memory, pos, bias)
            out = self._heads(tgt, ref_logits)
            outputs.append(out)
            # iterative refinement: the next layer starts from this layer's boxes (no gradient through them)
            ref_logits = inverse_sigmoid(out["pred_boxes"][..., :2].detach())
            sigma = out["pred_boxes"][..., 2:].detach().clamp(min=1.0 / max(h, w))
        return {**outputs[-1], "aux_outputs": outputs[:-1]}

    def cross_attention(self) -> torch.Tensor:
        """The last forward pass's decoder cross-attention, (L, B, Q, h, w), averaged over heads."""
        if self.feature_size is None:
            raise RuntimeError("run the model on images first")
        maps = torch.stack([layer.cross_attention for layer in self.decoder_layers])  # (L, B, Q, h*w)
        return maps.unflatten(-1, self.feature_size)


def build_small_detr(num_classes: int, num_queries: int = 9, *, widths: tuple[int, ...] = (32, 64, 128),
                     d_model: int = 64, nhead: int = 4, num_encoder_layers: int = 2, num_decoder_layers: int = 3,
                     dim_feedforward: int = 128, spatial_prior: bool = True) -> SmallDETR:
    """The course's small DETR with a from-scratch backbone of stride ``2 ** len(widths)``."""
    return SmallDETR(num_classes, num_queries, backbone=conv_backbone(widths), d_model=d_model, nhead=nhead,
                     num_encoder_layers=num_encoder_layers, num_decoder_layers=num_decoder_layers,
                     dim_feedforward=dim_feedforward, spatial_prior=spatial_prior)


# --------------------------------------------------------------------------- targets and outputs


def detr_targets(targets: list[dict], image_size: tuple[int, int]) -> list[dict]:
    """Torchvision-style targets (boxes xyxy pixels, labels 1..C) -> DETR targets (boxes normalised
    cxcywh (N, 4), labels 0..C-1 (N,)). ``image_size`` is (H, W)."""
    h, w = image_size
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    out = []
    for t in targets:
        boxes = plain(t["boxes"]).float().reshape(-1, 4)
        out.append({"boxes": ops.box_convert(boxes / scale, "xyxy", "cxcywh"),
                    "labels": torch.as_tensor(t["labels"]).long() - 1})
    return out


@torch.no_grad()
def postprocess(outputs: dict, image_size: tuple[int, int]) -> list[dict]:
    """DETR outputs -> one torchvision-style dict per image: ``boxes`` (Q, 4) xyxy pixels, ``scores``
    (Q,) the best object-class probability, ``labels`` (Q,) in 1..C. Every query gives one detection
    (no NMS); filter by score if you want fewer. ``image_size`` is (H, W)."""
    h, w = image_size
    probs = outputs["pred_logits"].softmax(-1)[..., :-1]  # (B, Q, C): drop "no object"
    scores, labels = probs.max(-1)  # (B, Q)
    boxes = ops.box_convert(outputs["pred_boxes"], "cxcywh", "xyxy")  # (B, Q, 4)
    boxes = boxes * torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    return [{"boxes": b.clamp(min=0).cpu(), "scores": s.cpu(), "labels": lab.cpu() + 1}
            for b, s, lab in zip(boxes, scores, labels)]


# --------------------------------------------------------------------------- matching and loss


@torch.no_grad()
def matching_cost(pred_logits: torch.Tensor, pred_boxes: torch.Tensor, tgt_labels: torch.Tensor,
                  tgt_boxes: torch.Tensor, cost_class: float = 1.0, cost_bbox: float = 5.0,
                  cost_giou: float = 2.0) -> torch.Tensor:
    """The DETR matching cost between the predictions of one image and its targets.

    Args:
        pred_logits: (Q, C + 1) class logits.
        pred_boxes: (Q, 4) normalised cxcywh.
        tgt_labels: (N,) int64 in 0..C-1.
        tgt_boxes: (N, 4) normalised cxcywh.

    Returns:
        (Q, N) cost: ``- cost_class * p(target class) + cost_bbox * L1(cxcywh) - cost_giou * GIoU(xyxy)``.
    """
    prob = pred_logits.softmax(-1)  # (Q, C + 1)
    c_class = -prob[:, tgt_labels]  # (Q, N)
    c_bbox = torch.cdist(pred_boxes, tgt_boxes, p=1)  # (Q, N)
    c_giou = -ops.generalized_box_iou(ops.box_convert(pred_boxes, "cxcywh", "xyxy"),
                                      ops.box_convert(tgt_boxes, "cxcywh", "xyxy"))  # (Q, N)
    return cost_bbox * c_bbox + cost_class * c_class + cost_giou * c_giou


@torch.no_grad()
def hungarian_match(pred_logits: torch.Tensor, pred_boxes: torch.Tensor, targets: list[dict],
                    **cost_weights: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One-to-one assignment of predictions to targets, per image (Hungarian algorithm).

    Args:
        pred_logits: (B, Q, C + 1).
        pred_boxes: (B, Q, 4) normalised cxcywh.
        targets: B dicts with ``"labels"`` (N_i,) and ``"boxes"`` (N_i, 4) normalised cxcywh.
        cost_weights: ``cost_class``, ``cost_bbox``, ``cost_giou`` of :func:`matching_cost`.

    Returns:
        B pairs ``(pred_idx, tgt_idx)``, int64 tensors of length ``min(Q, N_i)``: prediction
        ``pred_idx[k]`` is matched to target ``tgt_idx[k]``.
    """
    out = []
    for logits, boxes, t in zip(pred_logits, pred_boxes, targets):
        cost = matching_cost(logits, boxes, t["labels"], t["boxes"], **cost_weights)  # (Q, N_i)
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return out


def _matched_pairs(targets: list[dict], indices: list[tuple[torch.Tensor, torch.Tensor]]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The matching as flat tensors over the batch: image index, query index, target label, target box.

    Returns:
        (M,) image indices, (M,) query indices, (M,) labels and (M, 4) boxes of the M matched pairs.
    """
    image = torch.cat([torch.full_like(query, i) for i, (query, _) in enumerate(indices)])
    query = torch.cat([query for query, _ in indices])
    labels = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
    boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)])
    return image, query, labels, boxes


def set_loss(pred_logits: torch.Tensor, pred_boxes: torch.Tensor, targets: list[dict],
             indices: list[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
             eos_coef: float = 0.1) -> dict[str, torch.Tensor]:
    """DETR's losses for one decoder layer, given the matching.

    Args:
        pred_logits: (B, Q, C + 1).
        pred_boxes: (B, Q, 4) normalised cxcywh.
        targets: B dicts (``labels`` (N_i,), ``boxes`` (N_i, 4) normalised cxcywh).
        indices: the output of :func:`hungarian_match`.
        num_classes: C; unmatched queries are trained towards class C ("no object").
        eos_coef: the weight of the "no object" class in the cross-entropy.

    Returns:
        ``{"loss_ce": weighted cross-entropy over all B*Q queries, "loss_bbox": L1 on matched cxcywh
        / num_boxes, "loss_giou": (1 - GIoU) on matched pairs / num_boxes}``, where ``num_boxes`` is
        the number of target boxes in the whole batch (at least 1).
    """
    batch_idx, query_idx, labels, boxes = _matched_pairs(targets, indices)  # (M,), (M,), (M,), (M, 4)
    num_boxes = max(sum(len(t["labels"]) for t in targets), 1)
    # every query learns a class: its matched target's, else "no object" (index num_classes, down-weighted)
    classes = torch.full(pred_logits.shape[:2], num_classes, dtype=torch.int64, device=pred_logits.device)
    classes[batch_idx, query_idx] = labels  # (B, Q)
    class_weight = torch.ones(num_classes + 1, device=pred_logits.device)
    class_weight[num_classes] = eos_coef
    loss_ce = F.cross_entropy(pred_logits.transpose(1, 2), classes, weight=class_weight)
    # only the matched queries learn a box
    predicted = pred_boxes[batch_idx, query_idx]  # (M, 4)
    loss_bbox = F.l1_loss(predicted, boxes, reduction="sum") / num_boxes
    pair_giou = ops.generalized_box_iou(ops.box_convert(predicted, "cxcywh", "xyxy"),
                                        ops.box_convert(boxes, "cxcywh", "xyxy")).diagonal()  # (M,)
    loss_giou = (1 - pair_giou).sum() / num_boxes
    return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}


def detr_loss(outputs: dict, targets: list[dict], num_classes: int, *, eos_coef: float = 0.1,
              weights: tuple[float, float, float] = (1.0, 5.0, 2.0), match=hungarian_match,
              loss=set_loss) -> dict[str, torch.Tensor]:
    """The full DETR objective: match and penalise the last layer and every auxiliary layer.

    Args:
        outputs: the model's output dict (``pred_logits``, ``pred_boxes``, ``aux_outputs``).
        targets: B dicts (``labels`` (N_i,), ``boxes`` (N_i, 4) normalised cxcywh).
        weights: (class, L1, GIoU) weights, used both in the matching cost and in the loss.
        match, loss: the matching and per-layer loss functions (to plug in your own).

    Returns:
        ``{"ce": ..., "l1": ..., "giou": ...}`` weighted and summed over decoder layers.
    """
    w_class, w_bbox, w_giou = weights
    total = {"ce": 0.0, "l1": 0.0, "giou": 0.0}
    for out in [outputs, *outputs.get("aux_outputs", [])]:
        indices = match(out["pred_logits"], out["pred_boxes"], targets,
                        cost_class=w_class, cost_bbox=w_bbox, cost_giou=w_giou)
        parts = loss(out["pred_logits"], out["pred_boxes"], targets, indices, num_classes, eos_coef)
        total["ce"] = total["ce"] + w_class * parts["loss_ce"]
        total["l1"] = total["l1"] + w_bbox * parts["loss_bbox"]
        total["giou"] = total["giou"] + w_giou * parts["loss_giou"]
    return total


# --------------------------------------------------------------------------- the public DETR-R50

from .detr_r50 import DETR_R50_URL, load_detr_resnet50  # noqa: E402, F401 - re-exported: lab 06 imports it from here
