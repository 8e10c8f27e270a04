"""Lab 03's graded tests accept the solution and reject plausible wrong answers (visible + hidden).

Each wrong answer replaces the solution's function after the solution cells ran; the exercise's
test cell must then raise (nbgrader scores a test cell that raises anything 0). Most are derived
from the solution's source with ``mutate``, so they follow the solution when it changes.
"""


from tests.notebook_cells import exercise_tests, load_cells, mutate

LAB = "03_retinanet"
CELLS = load_cells(LAB)
SOLUTIONS = ["setup", "ex1-anchors", "ex2-matching", "ex2-box-coding", "ex3-focal", "ex4-augment"]
TEST_CELLS = ["test-anchors", "test-matching", "test-box-coding", "test-focal", "test-augment"]



def anchors(*changes):
    return mutate(CELLS, "ex1-anchors", *changes)


def matching(*changes):
    return mutate(CELLS, "ex2-matching", *changes)


def coding(*changes):
    return mutate(CELLS, "ex2-box-coding", *changes)


def focal(*changes):
    return mutate(CELLS, "ex3-focal", *changes)


def augment(*changes):
    return mutate(CELLS, "ex4-augment", *changes)


FLIP = "return torch.stack([width - x2, y1, width - x1, y2], dim=-1)"
KEEP = "keep = (w >= min_size) & (h >= min_size) & (w * h >= min_area)"
CLAMP = "clamped = torch.minimum(shifted.clamp(min=0), limits)"


WRONG = {
    "test-anchors": {
        "centred on the cell centre (half-stride offset)": anchors(
            ("ys = torch.arange(H, dtype=torch.float32) * stride[0]",
             "ys = (torch.arange(H, dtype=torch.float32) + 0.5) * stride[0]"),
            ("xs = torch.arange(W, dtype=torch.float32) * stride[1]",
             "xs = (torch.arange(W, dtype=torch.float32) + 0.5) * stride[1]")),
        "aspect ratio as w / h": anchors(("h_ratios = ratios.sqrt()", "h_ratios = 1 / ratios.sqrt()")),
        "no rounding": anchors(("(torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()",
                                "torch.stack([-ws, -hs, ws, hs], dim=1) / 2")),
        "widths rounded before halving": anchors(("(torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()",
                                                  "torch.stack([-ws, -hs, ws, hs], dim=1).round() / 2")),
        "x and y swapped in the shifts": anchors(("torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1)",
                                                  "torch.stack([shift_y, shift_x, shift_y, shift_x], dim=-1)")),
        "strides of y and x swapped": anchors(("* stride[0]", "* STRIDE_Y"), ("* stride[1]", "* stride[0]"),
                                              ("* STRIDE_Y", "* stride[1]")),
        "positions column by column": anchors(('shift_y, shift_x = torch.meshgrid(ys, xs, indexing="ij")',
                                               'shift_x, shift_y = torch.meshgrid(xs, ys, indexing="ij")')),
        "size-major order within a position": anchors(
            ("ws = (w_ratios[:, None] * sizes[None, :]).reshape(-1)",
             "ws = (w_ratios[None, :] * sizes[:, None]).reshape(-1)"),
            ("hs = (h_ratios[:, None] * sizes[None, :]).reshape(-1)",
             "hs = (h_ratios[None, :] * sizes[:, None]).reshape(-1)")),
        "anchor-major order (all positions of anchor 0 first)": anchors(
            ("return (shifts + cell[None]).reshape(-1, 4)",
             "return (shifts.reshape(1, -1, 4) + cell[:, None]).reshape(-1, 4)")),
        "float64 anchors": anchors(("return (shifts + cell[None]).reshape(-1, 4)",
                                    "return (shifts + cell[None]).reshape(-1, 4).double()")),
        "halves rounded away from zero (floor(x + 0.5))": anchors(
            ("(torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()",
             "(lambda v: v.sign() * (v.abs() + 0.5).floor())(torch.stack([-ws, -hs, ws, hs], dim=1) / 2)")),
        "grid_size read as (W, H)": anchors(("H, W = grid_size", "W, H = grid_size")),
        "int64 anchors (rounded with .long())": anchors(("return (shifts + cell[None]).reshape(-1, 4)",
                                                         "return (shifts + cell[None]).reshape(-1, 4).long()")),
        "numpy array instead of a tensor": anchors(("return (shifts + cell[None]).reshape(-1, 4)",
                                                    "return (shifts + cell[None]).reshape(-1, 4).numpy()")),
        "(H, W, A, 4) instead of (H * W * A, 4)": anchors(("return (shifts + cell[None]).reshape(-1, 4)",
                                                          "return (shifts + cell[None]).reshape(H, W, -1, 4)")),
        "stride[0] for both directions": anchors(("* stride[1]", "* stride[0]")),
    },
    "test-matching": {
        "positive only above 0.5 (exclusive)": matching(
            ("(best_iou >= bg_iou_thresh) & (best_iou < fg_iou_thresh)",
             "(best_iou >= bg_iou_thresh) & (best_iou <= fg_iou_thresh)")),
        "background at 0.4 inclusive": matching(("matches[best_iou < bg_iou_thresh] = -1",
                                                 "matches[best_iou <= bg_iou_thresh] = -1"),
                                                ("(best_iou >= bg_iou_thresh) & (best_iou < fg_iou_thresh)",
                                                 "(best_iou > bg_iou_thresh) & (best_iou < fg_iou_thresh)")),
        "background and ignored codes swapped": matching(("] = -1", "] = -3"), ("] = -2", "] = -1"),
                                                         ("] = -3", "] = -2")),
        "ignores allow_low_quality_matches (never)": matching(("if allow_low_quality_matches:", "if False:")),
        "ignores allow_low_quality_matches (always)": matching(("if allow_low_quality_matches:", "if True:")),
        "low-quality anchor takes the ground truth it is best for": matching(
            ("_, anchor_idx = torch.nonzero(iou == best_for_gt, as_tuple=True)",
             "gt_idx, anchor_idx = torch.nonzero(iou == best_for_gt, as_tuple=True)"),
            ("matches[anchor_idx] = best_gt[anchor_idx]", "matches[anchor_idx] = gt_idx")),
        "one best anchor per ground truth (ties dropped)": matching(
            ("_, anchor_idx = torch.nonzero(iou == best_for_gt, as_tuple=True)",
             "anchor_idx = iou.argmax(dim=1)")),
        "crashes without ground truth": matching(("if len(gt_boxes) == 0:", "if False:")),
        "no ground truth: everything ignored": matching(("torch.full((len(anchors),), -1, dtype=torch.int64)",
                                                         "torch.full((len(anchors),), -2, dtype=torch.int64)")),
        "thresholds hard-coded at 0.5 / 0.4": matching(
            ("matches[best_iou < bg_iou_thresh] = -1", "matches[best_iou < 0.4] = -1"),
            ("(best_iou >= bg_iou_thresh) & (best_iou < fg_iou_thresh)", "(best_iou >= 0.4) & (best_iou < 0.5)")),
        "float -1 without ground truth (torch.full without dtype)": matching(
            ("torch.full((len(anchors),), -1, dtype=torch.int64)", "torch.full((len(anchors),), -1.0)")),
        "int32 matches": matching(("    return matches\n", "    return matches.int()\n")),
        "numpy array instead of a tensor": matching(("    return matches\n", "    return matches.numpy()\n")),
        "low-quality matches only for background anchors (ignored ones stay -2)": matching(
            ("matches[anchor_idx] = best_gt[anchor_idx]",
             "anchor_idx = anchor_idx[matches[anchor_idx] == -1]\n        matches[anchor_idx] = best_gt[anchor_idx]")),
    },
    "test-box-coding": {
        "no log on the size ratios": coding(("ww * torch.log(gw / aw), wh * torch.log(gh / ah)",
                                             "ww * (gw / aw), wh * (gh / ah)")),
        "corners instead of centres": coding(("ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah",
                                              "ax, ay = anchors[:, 0], anchors[:, 1]"),
                                             ("gx, gy = gt_boxes[:, 0] + 0.5 * gw, gt_boxes[:, 1] + 0.5 * gh",
                                              "gx, gy = gt_boxes[:, 0], gt_boxes[:, 1]")),
        "weights ignored": coding(("wx, wy, ww, wh = weights", "wx, wy, ww, wh = 1.0, 1.0, 1.0, 1.0")),
        "decode multiplies by the weights": coding(("deltas[:, 0] / wx", "deltas[:, 0] * wx"),
                                                   ("deltas[:, 1] / wy", "deltas[:, 1] * wy"),
                                                   ("deltas[:, 2] / ww", "deltas[:, 2] * ww"),
                                                   ("deltas[:, 3] / wh", "deltas[:, 3] * wh")),
        "offsets in units of the ground truth's size": coding(("wx * (gx - ax) / aw, wy * (gy - ay) / ah",
                                                               "wx * (gx - ax) / gw, wy * (gy - ay) / gh")),
        "no clamp before exp": coding(("(deltas[:, 2] / ww).clamp(max=max_log_scale)", "(deltas[:, 2] / ww)"),
                                      ("(deltas[:, 3] / wh).clamp(max=max_log_scale)", "(deltas[:, 3] / wh)")),
        "clamped on both sides": coding(("clamp(max=max_log_scale)", "clamp(-max_log_scale, max_log_scale)")),
        "clamped before dividing by the weights": coding(
            ("(deltas[:, 2] / ww).clamp(max=max_log_scale)", "deltas[:, 2].clamp(max=max_log_scale) / ww"),
            ("(deltas[:, 3] / wh).clamp(max=max_log_scale)", "deltas[:, 3].clamp(max=max_log_scale) / wh")),
        "decode returns cxcywh": coding(("return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], dim=1)",
                                         "return torch.stack([x, y, w, h], dim=1)")),
        "dx scaled by the anchor height": coding(("deltas[:, 0] / wx * aw + ax", "deltas[:, 0] / wx * ah + ax")),
        "height delta not clamped": coding(("(deltas[:, 3] / wh).clamp(max=max_log_scale)", "(deltas[:, 3] / wh)")),
        "max_log_scale argument ignored (always log(1000/16))": coding(
            ("clamp(max=max_log_scale)", "clamp(max=math.log(1000.0 / 16))")),
        "encode divides by the weights": coding(("wx * (gx - ax) / aw, wy * (gy - ay) / ah",
                                                 "(gx - ax) / aw / wx, (gy - ay) / ah / wy"),
                                                ("ww * torch.log(gw / aw), wh * torch.log(gh / ah)",
                                                 "torch.log(gw / aw) / ww, torch.log(gh / ah) / wh")),
        "corner differences instead of centre and size": coding(
            ("return torch.stack([wx * (gx - ax) / aw, wy * (gy - ay) / ah,\n"
             "                        ww * torch.log(gw / aw), wh * torch.log(gh / ah)], dim=1)",
             "return (gt_boxes - anchors) / torch.stack([aw, ah, aw, ah], dim=1)")),
        "encode returns float64": coding(("], dim=1)  # (N, 4)", "], dim=1).double()  # (N, 4)")),
        "encode crashes on no boxes (builds the result from a list of rows)": """
_ref_encode = encode_boxes
def encode_boxes(gt_boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return torch.stack([_ref_encode(g[None], a[None], weights)[0] for g, a in zip(gt_boxes, anchors)])
""",
    },
    "test-focal": {
        "alpha for both classes": focal(("(alpha * targets + (1 - alpha) * (1 - targets))", "alpha")),
        "alpha and 1 - alpha swapped": focal(("(alpha * targets + (1 - alpha) * (1 - targets))",
                                              "((1 - alpha) * targets + alpha * (1 - targets))")),
        "gamma on 1 - p instead of 1 - p_t": focal(("ce * (1 - p_t) ** gamma", "ce * (1 - p) ** gamma")),
        "gamma on p_t": focal(("ce * (1 - p_t) ** gamma", "ce * p_t ** gamma")),
        "mean and sum swapped": focal(("return loss.mean()", "return LOSS_SUM"),
                                      ("return loss.sum()", "return loss.mean()"),
                                      ("return LOSS_SUM", "return loss.sum()")),
        "mean over anchors only": focal(("return loss.mean()", "return loss.sum() / loss.shape[0]")),
        "softmax instead of sigmoid": focal(("p = torch.sigmoid(logits)", "p = torch.softmax(logits, dim=-1)")),
        "log of the sigmoid (overflows)": focal(
            ('ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log p_t', "pass"),
            ("loss = ce * (1 - p_t) ** gamma", "loss = -torch.log(p_t) * (1 - p_t) ** gamma")),
        "modulating factor detached": focal(("ce * (1 - p_t) ** gamma", "ce * ((1 - p_t) ** gamma).detach()")),
        "alpha < 0 still weights": focal(("if alpha >= 0:", "if True:")),
        "alpha = 0 treated as no weighting": focal(("if alpha >= 0:", "if alpha > 0:")),
        "unknown reduction returns the elementwise loss": focal(
            ("raise ValueError(f\"reduction must be 'none', 'mean' or 'sum', got {reduction!r}\")", "return loss")),
        "probabilities expected, no sigmoid (logits clamped to [0, 1])": focal(
            ("p = torch.sigmoid(logits)", "p = logits.clamp(1e-6, 1 - 1e-6)"),
            ('ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")',
             'ce = F.binary_cross_entropy(p, targets, reduction="none")')),
        "mean as a (1,) tensor": focal(("return loss.mean()", "return loss.mean().reshape(1)")),
        "sum as a Python float (.item())": focal(("return loss.sum()", "return loss.sum().item()")),
        "sum over the last dimension only": focal(("return loss.sum()", "return loss.sum(-1)")),
        "unknown reduction treated as mean": focal(
            ("raise ValueError(f\"reduction must be 'none', 'mean' or 'sum', got {reduction!r}\")",
             "return loss.mean()")),
        "cross-entropy detached (gradient only through the modulating factor)": focal(
            ("ce * (1 - p_t) ** gamma", "ce.detach() * (1 - p_t) ** gamma")),
        "alpha applied as a global factor": focal(("(alpha * targets + (1 - alpha) * (1 - targets))", "(1 - alpha)")),
    },
    "test-augment": {
        "flip as width - x (x1, x2 not swapped)": augment(
            (FLIP, "return torch.stack([width - x1, y1, width - x2, y2], dim=-1)")),
        "flip as width - x1 for both ends (box mirrored about its left edge)": augment(
            (FLIP, "return torch.stack([width - x1, y1, width - x1 + (x2 - x1), y2], dim=-1)")),
        "flip with pixel centres (width - 1 - x)": augment(
            (FLIP, "return torch.stack([width - 1 - x2, y1, width - 1 - x1, y2], dim=-1)")),
        "flip of y instead of x": augment((FLIP, "return torch.stack([x1, width - y2, x2, width - y1], dim=-1)")),
        "flip in place": augment((FLIP, "boxes[:, [0, 2]] = width - boxes[:, [2, 0]]\n    return boxes")),
        "flip returns float32 whatever the input": augment((FLIP, FLIP.replace("dim=-1)", "dim=-1).float()"))),
        "no clamp": augment((CLAMP, "clamped = shifted")),
        "clamp to width - 1 (off by one)": augment(
            ("limits = torch.tensor([width, height, width, height], dtype=boxes.dtype)",
             "limits = torch.tensor([width - 1, height - 1, width - 1, height - 1], dtype=boxes.dtype)")),
        "clamp with height and width swapped": augment(
            ("limits = torch.tensor([width, height, width, height], dtype=boxes.dtype)",
             "limits = torch.tensor([height, width, height, width], dtype=boxes.dtype)")),
        "shift by +left/+top": augment(("shifted = boxes - torch.tensor", "shifted = boxes + torch.tensor")),
        "top and left swapped": augment(("torch.tensor([left, top, left, top]", "torch.tensor([top, left, top, left]")),
        "empty boxes kept (no sanitize)": augment((KEEP, "keep = torch.ones(len(clamped), dtype=torch.bool)")),
        "only zero-area boxes dropped": augment((KEEP, "keep = (w > 0) & (h > 0)")),
        "min_area ignored": augment((KEEP, "keep = (w >= min_size) & (h >= min_size)")),
        "min_size ignored": augment((KEEP, "keep = w * h >= min_area")),
        "strict thresholds (> instead of >=)": augment(
            (KEEP, "keep = (w > min_size) & (h > min_size) & (w * h > min_area)")),
        "labels not dropped with their boxes": augment(("return clamped[keep], labels[keep]",
                                                        "return clamped[keep], labels")),
        "labels out of step (the first M kept)": augment(("return clamped[keep], labels[keep]",
                                                          "return clamped[keep], labels[:int(keep.sum())]")),
        "empty box list not handled": augment(("shifted = boxes - torch.tensor",
                                               "assert len(boxes), 'no boxes'\n    shifted = boxes - torch.tensor")),
        "empty result as a flat tensor": augment(("return clamped[keep], labels[keep]",
                                                  "return (clamped[keep] if keep.any() else torch.tensor([])), "
                                                  "labels[keep]")),
        "crop in place": augment(("shifted = boxes - torch.tensor([left, top, left, top], dtype=boxes.dtype)",
                                  "shifted = boxes.sub_(torch.tensor([left, top, left, top], dtype=boxes.dtype))")),
    },
}

solved, test_solution_passes, test_wrong_answer_fails = exercise_tests(LAB, SOLUTIONS, TEST_CELLS, WRONG)
