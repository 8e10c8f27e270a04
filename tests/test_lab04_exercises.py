"""Lab 04's graded tests accept the solution and reject plausible wrong answers (visible + hidden).

Each wrong answer replaces the solution's functions after the solution cells ran (most are the
solution's own source with one mistake, via ``mutate``); the exercise's test cell must then raise
(nbgrader scores a test cell that raises anything 0).
"""


from tests.notebook_cells import exercise_tests, load_cells, mutate

LAB = "04_rcnn"
CELLS = load_cells(LAB)
SOLUTIONS = ["setup", "ex1-roi", "ex2-proposals", "ex3-masks"]
TEST_CELLS = ["test-roi", "test-proposals", "test-masks"]



def roi(*changes):
    return mutate(CELLS, "ex1-roi", *changes)


def proposals(*changes):
    return mutate(CELLS, "ex2-proposals", *changes)


def masks(*changes):
    return mutate(CELLS, "ex3-masks", *changes)


C_ROUND = "math.copysign(math.floor(abs(v * spatial_scale) + 0.5), v)"
ALIGN_CORNERS = ("x1, y1 = x1 * spatial_scale - offset, y1 * spatial_scale - offset",
                 "roi_w, roi_h = x2 * spatial_scale - offset - x1, y2 * spatial_scale - offset - y1")

WRONG = {
    "test-roi": {
        "aligned=True without the -0.5 offset": roi(("offset = 0.5 if aligned else 0.0", "offset = 0.0")),
        "RoIAlign rounds the scaled corners": roi(
            (ALIGN_CORNERS[0], "x1, y1 = round(x1 * spatial_scale) - offset, round(y1 * spatial_scale) - offset"),
            (ALIGN_CORNERS[1], "roi_w, roi_h = round(x2 * spatial_scale) - offset - x1, "
                               "round(y2 * spatial_scale) - offset - y1")),
        "RoIAlign ignores spatial_scale": '''
_ref_align = roi_align
def roi_align(features, boxes, output_size, spatial_scale, sampling_ratio=-1, aligned=False):
    return _ref_align(features, boxes, output_size, 1.0, sampling_ratio, aligned)
''',
        "RoIAlign: adaptive sampling fixed at 2 points": roi(
            ("else math.ceil(roi_h / oh)", "else 2"), ("else math.ceil(roi_w / ow)", "else 2")),
        "RoIAlign: no minimum size 1 when aligned=False": roi(
            ("if not aligned:\n            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)", "pass")),
        "RoIAlign: mean over the samples inside the map only": roi(
            ("out[k] = samples.mean(dim=-1)", "out[k] = samples.sum(-1) / (samples != 0).sum(-1).clamp(min=1)")),
        "RoIAlign: x and y swapped": roi(
            ("bilinear_sample(features[int(b)], yy, xx)", "bilinear_sample(features[int(b)], xx, yy)")),
        "RoIAlign: batch index ignored": roi(
            ("bilinear_sample(features[int(b)], yy, xx)", "bilinear_sample(features[0], yy, xx)")),
        "bilinear: points outside the map not zeroed": roi(("return values * ~outside", "return values")),
        "RoI pooling without rounding": roi((C_ROUND, "v * spatial_scale")),
        "RoI pooling with Python's round (halves to even)": roi((C_ROUND, "round(v * spatial_scale)")),
        "RoI pooling: no +1 in the region size": roi(
            ("max(y2 - y1 + 1, 1) / oh", "max(y2 - y1, 1) / oh"), ("max(x2 - x1 + 1, 1) / ow", "max(x2 - x1, 1) / ow")),
        "RoI pooling: bin ends rounded down": roi(
            ("math.ceil((p + 1) * bin_h)", "math.floor((p + 1) * bin_h)"),
            ("math.ceil((q + 1) * bin_w)", "math.floor((q + 1) * bin_w)")),
        "RoI pooling: average instead of max": roi(
            (".amax(dim=(1, 2))", ".mean(dim=(1, 2))")),
        "RoI pooling: batch index ignored": roi(
            ("features[int(b), :, top:bottom, left:right]", "features[0, :, top:bottom, left:right]")),
        "bilinear: negative coordinates not clamped to 0": roi(("y, x = y.clamp(min=0), x.clamp(min=0)", "pass")),
        "bilinear: a point on the last row (y = H) counted as outside": roi(
            ("outside = (y < -1) | (y > H) | (x < -1) | (x > W)",
             "outside = (y < -1) | (y >= H) | (x < -1) | (x >= W)")),
        "RoIAlign: adaptive sampling with floor instead of ceil": roi(
            ("else math.ceil(roi_h / oh)", "else math.floor(roi_h / oh)"),
            ("else math.ceil(roi_w / ow)", "else math.floor(roi_w / ow)")),
        "RoIAlign: float64 output": roi(
            ("    out = features.new_zeros(len(boxes), C, oh, ow)\n    offset",
             "    out = torch.zeros(len(boxes), C, oh, ow, dtype=torch.float64)\n    offset")),
        "RoI pooling with torch.round (halves to even)": roi(
            (C_ROUND, "float(torch.round(torch.tensor(v * spatial_scale)))")),
        "RoI pooling: bins clipped to [0, H - 1]": roi(
            ("bottom = int(min(max(math.ceil((p + 1) * bin_h) + y1, 0), H))",
             "bottom = int(min(max(math.ceil((p + 1) * bin_h) + y1, 0), H - 1))"),
            ("right = int(min(max(math.ceil((q + 1) * bin_w) + x1, 0), W))",
             "right = int(min(max(math.ceil((q + 1) * bin_w) + x1, 0), W - 1))")),
        "RoI pooling crashes on no boxes (stacks a list of crops)": """
_ref_pool = roi_pool
def roi_pool(features, boxes, output_size, spatial_scale):
    return torch.stack([_ref_pool(features, b[None], output_size, spatial_scale)[0] for b in boxes])
""",
    },
    "test-proposals": {
        "no clamp of dw, dh": proposals(
            ("deltas[:, 2].clamp(max=BOX_CLIP), deltas[:, 3].clamp(max=BOX_CLIP)", "deltas[:, 2], deltas[:, 3]")),
        "dy scaled by the anchor width": proposals(("deltas[:, 1] * heights", "deltas[:, 1] * widths")),
        "clip the anchors before decoding, not the boxes": proposals(
            ("boxes = decode_deltas(deltas, anchors)",
             "boxes = decode_deltas(deltas, ops.clip_boxes_to_image(anchors, image_size))"),
            ("boxes = ops.clip_boxes_to_image(boxes, image_size)", "pass")),
        "min_size as an area": proposals(
            ("keep = ops.remove_small_boxes(boxes, min_size)",
             "keep = torch.where(ops.box_area(boxes) >= min_size)[0]")),
        "small boxes removed before clipping": proposals(
            ("boxes = ops.clip_boxes_to_image(boxes, image_size)\n    keep = ops.remove_small_boxes(boxes, min_size)",
             "keep = ops.remove_small_boxes(boxes, min_size)\n    boxes = ops.clip_boxes_to_image(boxes, image_size)")),
        "NMS before top-k": '''
def select_proposals(objectness, deltas, anchors, image_size, pre_nms_top_n, post_nms_top_n, nms_threshold, min_size):
    boxes = ops.clip_boxes_to_image(decode_deltas(deltas, anchors), image_size)
    scores = torch.sigmoid(objectness)
    keep = ops.remove_small_boxes(boxes, min_size)
    boxes, scores = boxes[keep], scores[keep]
    keep = ops.nms(boxes, scores, nms_threshold)[:pre_nms_top_n][:post_nms_top_n]
    return boxes[keep], scores[keep]
''',
        "top-k of the lowest objectness": proposals(
            ("objectness.topk(min(pre_nms_top_n, len(objectness)))",
             "objectness.topk(min(pre_nms_top_n, len(objectness)), largest=False)")),
        "proposals returned in anchor order": '''
_ref_select = select_proposals
def select_proposals(*args, **kwargs):
    boxes, scores = _ref_select(*args, **kwargs)
    order = torch.argsort(boxes[:, 0])
    return boxes[order], scores[order]
''',
        "scores left as logits": proposals(("torch.sigmoid(objectness[top])", "objectness[top]")),
        "post_nms_top_n ignored": proposals(("ops.nms(boxes, scores, nms_threshold)[:post_nms_top_n]",
                                             "ops.nms(boxes, scores, nms_threshold)")),
        "crashes with fewer anchors than pre_nms_top_n": proposals(
            ("objectness.topk(min(pre_nms_top_n, len(objectness)))", "objectness.topk(pre_nms_top_n)")),
        "image_size read as (width, height)": proposals(
            ("ops.clip_boxes_to_image(boxes, image_size)", "ops.clip_boxes_to_image(boxes, image_size[::-1])")),
        "dw, dh clamped on both sides": proposals(
            ("deltas[:, 2].clamp(max=BOX_CLIP), deltas[:, 3].clamp(max=BOX_CLIP)",
             "deltas[:, 2].clamp(-BOX_CLIP, BOX_CLIP), deltas[:, 3].clamp(-BOX_CLIP, BOX_CLIP)")),
        "scores in float64": proposals(("torch.sigmoid(objectness[top])", "torch.sigmoid(objectness[top].double())")),
        "anchor corner used as its centre": proposals(("cx = anchors[:, 0] + 0.5 * widths", "cx = anchors[:, 0]"),
                                                      ("cy = anchors[:, 1] + 0.5 * heights", "cy = anchors[:, 1]")),
        "boxes never clipped to the image": proposals(("boxes = ops.clip_boxes_to_image(boxes, image_size)", "pass")),
        "min_size ignored": proposals(("keep = ops.remove_small_boxes(boxes, min_size)",
                                       "keep = ops.remove_small_boxes(boxes, 1e-3)")),
    },
    "test-masks": {
        "binarise with >=": masks(("return masks > threshold", "return masks >= threshold")),
        "binarise ignores its threshold": masks(("return masks > threshold", "return masks > 0.5")),
        "no padding and no box expansion": masks(
            ("padded = F.pad(masks, (1, 1, 1, 1))", "padded = masks"), ("scale = (M + 2) / M", "scale = 1.0")),
        "padding without growing the box": masks(("scale = (M + 2) / M", "scale = 1.0")),
        "box size off by one": masks(("w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)",
                                      "w, h = max(x2 - x1, 1), max(y2 - y1, 1)")),
        "corners rounded instead of truncated": masks((".to(torch.int64)  # truncates", ".round().to(torch.int64)")),
        "resize with align_corners=True": masks(('align_corners=False', 'align_corners=True')),
        "union without subtracting the intersection": masks(
            ("a.sum(1)[:, None] + b.sum(1)[None, :] - inter", "a.sum(1)[:, None] + b.sum(1)[None, :]")),
        "NaN for empty masks": masks(
            ("torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))", "inter / union")),
        "IoU matrix transposed": '''
_ref_iou = mask_iou
def mask_iou(masks_a, masks_b):
    return _ref_iou(masks_b, masks_a)
''',
        "intersection over the first mask only": masks(
            ("a.sum(1)[:, None] + b.sum(1)[None, :] - inter", "a.sum(1)[:, None] + 0 * inter")),
        "binarise returns a float mask": masks(("return masks > threshold", "return (masks > threshold).float()")),
        "mask_iou in float32": masks(("a = masks_a.flatten(1).double()", "a = masks_a.flatten(1).float()"),
                                     ("b = masks_b.flatten(1).double()", "b = masks_b.flatten(1).float()")),
        "paste_masks: image_size read as (W, H)": masks(("    H, W = image_size\n", "    W, H = image_size\n")),
        "paste_masks: no cut at the image border": masks(
            ("top, bottom, left, right = max(y1, 0), min(y2 + 1, H), max(x1, 0), min(x2 + 1, W)",
             "top, bottom, left, right = y1, y2 + 1, x1, x2 + 1")),
        "two empty masks have IoU 1": masks(("torch.zeros_like(inter))", "torch.ones_like(inter))")),
        "paste_masks returns binarised masks": masks(("    return out\n", "    return out > 0.5\n")),
        "mask_iou crashes with no masks (a loop over pairs)": """
_ref_iou = mask_iou
def mask_iou(masks_a, masks_b):
    return torch.stack([torch.cat([_ref_iou(x[None], y[None])[0] for y in masks_b]) for x in masks_a])
""",
    },
}

solved, test_solution_passes, test_wrong_answer_fails = exercise_tests(LAB, SOLUTIONS, TEST_CELLS, WRONG)
