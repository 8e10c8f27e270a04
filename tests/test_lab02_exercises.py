"""Lab 02's graded tests accept the solution and reject plausible wrong answers (visible + hidden).

Each wrong answer replaces the solution's function after the solution cells ran; the exercise's
test cell must then raise (nbgrader scores a test cell that raises anything 0).
"""


from tests.notebook_cells import exercise_tests, load_cells, mutate

LAB = "02_yolo"
CELLS = load_cells(LAB)
SOLUTIONS = ["setup", "ex1-encode-decode", "ex2-loss", "ex3-nms", "ex4-ap"]
TEST_CELLS = ["test-encode-decode", "test-loss", "test-nms", "test-ap"]



ENCODE = '''
_ref_encode = encode_yolo_targets
def encode_yolo_targets(boxes, labels, S, num_classes, image_size):
    target = torch.zeros(S, S, 5 + num_classes)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2; cy = (boxes[:, 1] + boxes[:, 3]) / 2
    w = boxes[:, 2] - boxes[:, 0]; h = boxes[:, 3] - boxes[:, 1]
    for k in {ORDER}:
        col = {COL}; row = {ROW}
        target[row, col] = 0
        target[row, col, 0] = {X}; target[row, col, 1] = cy[k] / image_size * S - row
        target[row, col, 2] = {W}; target[row, col, 3] = h[k] / image_size
        target[row, col, 4] = 1
        target[row, col, 5 + int(labels[k]) {LABEL}] = 1
    return target
'''
RIGHT = dict(ORDER="torch.argsort(w * h, stable=True).tolist()", COL="min(int(cx[k] / image_size * S), S - 1)",
             ROW="min(int(cy[k] / image_size * S), S - 1)", X="cx[k] / image_size * S - col", W="w[k] / image_size",
             LABEL="- 1")


def encode_variant(**changes):
    return ENCODE.format(**{**RIGHT, **changes})


LOSS = '''
_ref_loss = yolo_loss
def yolo_loss(pred, target, B, lambda_coord=5.0, lambda_noobj=0.5):
    terms = _ref_loss(pred, target, B, lambda_coord, lambda_noobj)
{CHANGE}
    return terms
'''

WRONG = {
    "test-encode-decode": {
        "first object wins in a shared cell": encode_variant(ORDER="range(len(boxes))"),
        "last listed object wins in a shared cell": encode_variant(ORDER="reversed(range(len(boxes)))"),
        "row and column swapped": encode_variant(COL="min(int(cy[k] / image_size * S), S - 1)",
                                                 ROW="min(int(cx[k] / image_size * S), S - 1)"),
        "no clamp on the last cell": encode_variant(COL="int(cx[k] / image_size * S)",
                                                    ROW="int(cy[k] / image_size * S)"),
        "offset relative to the image, not the cell": encode_variant(X="cx[k] / image_size"),
        "width relative to the cell": encode_variant(W="w[k] / image_size * S"),
        "labels used as 0-based": encode_variant(LABEL="- 0 - (int(labels[k]) == num_classes) * num_classes"),
        "decode: col and row swapped": '''
_ref_decode = decode_yolo_output
def decode_yolo_output(output, B, image_size, score_threshold):
    return _ref_decode(output.transpose(0, 1), B, image_size, score_threshold)
''',
        "decode: score is the class probability only": '''
def decode_yolo_output(output, B, image_size, score_threshold):
    S = output.shape[0]
    preds = output[..., :5 * B].reshape(S, S, B, 5); probs = output[..., 5 * B:]
    rows = torch.arange(S, dtype=output.dtype).view(S, 1, 1); cols = torch.arange(S, dtype=output.dtype).view(1, S, 1)
    cx = (preds[..., 0] + cols) / S * image_size; cy = (preds[..., 1] + rows) / S * image_size
    w, h = preds[..., 2] * image_size, preds[..., 3] * image_size
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).reshape(-1, 4)
    p, c = probs.max(-1)
    scores = p[..., None].expand(S, S, B).reshape(-1)
    labels = (c[..., None].expand(S, S, B) + 1).reshape(-1)
    keep = scores > score_threshold
    return boxes[keep], scores[keep], labels[keep]
''',
        "decode: >= threshold": '''
_ref_decode = decode_yolo_output
def decode_yolo_output(output, B, image_size, score_threshold):
    return _ref_decode(output, B, image_size, score_threshold - 1e-6)
''',
        "offset computed from the unclamped cell (border off by one)": encode_variant(
            X="cx[k] / image_size * S - int(cx[k] / image_size * S)"),
        "float64 target": encode_variant(ORDER="torch.argsort(w * h, stable=True).tolist()") + '''
_float32_encode = encode_yolo_targets
def encode_yolo_targets(boxes, labels, S, num_classes, image_size):
    return _float32_encode(boxes, labels, S, num_classes, image_size).double()
''',
        "empty image crashes (argsort of nothing indexed)": '''
_ref_encode = encode_yolo_targets
def encode_yolo_targets(boxes, labels, S, num_classes, image_size):
    biggest = int(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).argmax())
    return _ref_encode(boxes, labels, S, num_classes, image_size) if biggest >= 0 else None
''',
        "decode: float labels": '''
_ref_decode = decode_yolo_output
def decode_yolo_output(output, B, image_size, score_threshold):
    b, s, l = _ref_decode(output, B, image_size, score_threshold)
    return b, s, l.float()
''',
        "decode: numpy scores": '''
_ref_decode = decode_yolo_output
def decode_yolo_output(output, B, image_size, score_threshold):
    b, s, l = _ref_decode(output, B, image_size, score_threshold)
    return b, s.numpy(), l
''',
        "decode: all coordinates first, then the confidences": '''
def decode_yolo_output(output, B, image_size, score_threshold):
    S = output.shape[0]
    coords = output[..., :4 * B].reshape(S, S, B, 4); conf = output[..., 4 * B:5 * B]; probs = output[..., 5 * B:]
    rows = torch.arange(S, dtype=output.dtype).view(S, 1, 1); cols = torch.arange(S, dtype=output.dtype).view(1, S, 1)
    cx = (coords[..., 0] + cols) / S * image_size; cy = (coords[..., 1] + rows) / S * image_size
    w, h = coords[..., 2] * image_size, coords[..., 3] * image_size
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).reshape(-1, 4)
    p, c = probs.max(-1)
    scores = (conf * p[..., None]).reshape(-1)
    labels = (c[..., None].expand(S, S, B) + 1).reshape(-1)
    keep = scores > score_threshold
    return boxes[keep], scores[keep], labels[keep]
''',
        "decode: labels 0-based": '''
_ref_decode = decode_yolo_output
def decode_yolo_output(output, B, image_size, score_threshold):
    b, s, l = _ref_decode(output, B, image_size, score_threshold)
    return b, s, l - 1
''',
    },
    "test-loss": {
        "no lambda_coord on the size term": LOSS.format(CHANGE="    terms['size'] = terms['size'] / lambda_coord"),
        "sum over the batch instead of mean": LOSS.format(
            CHANGE="    terms = {k: v * pred.shape[0] for k, v in terms.items()}"),
        "noobj without lambda_noobj": LOSS.format(CHANGE="    terms['noobj'] = terms['noobj'] / lambda_noobj"),
        "noobj only in empty cells": '''
_ref_loss = yolo_loss
def yolo_loss(pred, target, B, lambda_coord=5.0, lambda_noobj=0.5):
    terms = _ref_loss(pred, target, B, lambda_coord, lambda_noobj)
    conf = pred[..., 4:5 * B:5]
    empty = target[..., 4] == 0
    terms["noobj"] = lambda_noobj * (conf ** 2)[empty].sum() / pred.shape[0]
    return terms
''',
        "responsible predictor is always the first": '''
_ref_loss = yolo_loss
def yolo_loss(pred, target, B, lambda_coord=5.0, lambda_noobj=0.5):
    # shift the other predictors far away so the first one is always the best match
    p = pred.clone()
    for j in range(1, B):
        p[..., 5 * j:5 * j + 4] = torch.tensor([0.0, 0.0, 1e-4, 1e-4])
    terms = _ref_loss(p, target, B, lambda_coord, lambda_noobj)
    return terms
''',
        "confidence target 1 instead of the IoU": mutate(
            CELLS, "ex2-loss", ("((ious.detach() - boxes[..., 4]) ** 2)", "((1 - boxes[..., 4]) ** 2)")),
        "IoU target not detached": mutate(CELLS, "ex2-loss", ("ious.detach()", "ious")),
        "w and h without square roots": mutate(
            CELLS, "ex2-loss", ("boxes[..., 2].sqrt() - t[..., 2].sqrt()", "boxes[..., 2] - t[..., 2]")),
        "responsible predictor by lowest IoU": mutate(CELLS, "ex2-loss", ("ious.argmax(-1)", "ious.argmin(-1)")),
        "obj term on detached predictions": mutate(
            CELLS, "ex2-loss",
            ("((ious.detach() - boxes[..., 4]) ** 2)", "((ious.detach() - boxes[..., 4].detach()) ** 2)")),
        "obj term left out (zero)": LOSS.format(CHANGE="    terms['obj'] = 0 * terms['obj']"),
        "class term on detached probabilities": mutate(
            CELLS, "ex2-loss",
            ("((target[..., 5:] - pred[..., 5 * B:]) ** 2)", "((target[..., 5:] - pred[..., 5 * B:].detach()) ** 2)")),
        "mean over the cells as well as the images": LOSS.format(
            CHANGE="    terms = {k: v / (pred.shape[1] * pred.shape[2]) for k, v in terms.items()}"),
        "ties go to the last predictor": mutate(
            CELLS, "ex2-loss", ("F.one_hot(ious.argmax(-1), B)", "F.one_hot(B - 1 - ious.flip(-1).argmax(-1), B)")),
        "hard-coded lambdas 5 and 0.5": LOSS.format(
            CHANGE="    terms = _ref_loss(pred, target, B)"),
        "float64 terms": LOSS.format(CHANGE="    terms = {k: v.double() for k, v in terms.items()}"),
        "class term over all cells": '''
_ref_loss = yolo_loss
def yolo_loss(pred, target, B, lambda_coord=5.0, lambda_noobj=0.5):
    terms = _ref_loss(pred, target, B, lambda_coord, lambda_noobj)
    terms["cls"] = ((target[..., 5:] - pred[..., 5 * B:]) ** 2).sum() / pred.shape[0]
    return terms
''',
    },
    "test-nms": {
        "keeps boxes in input order": '''
_ref_nms = nms
def nms(boxes, scores, iou_threshold):
    return _ref_nms(boxes, scores, iou_threshold).sort().values
''',
        ">= instead of >": mutate(CELLS, "ex3-nms", ("ious[i] > iou_threshold", "ious[i] >= iou_threshold")),
        "no score sort": mutate(CELLS, "ex3-nms", ("for i in order.tolist():", "for i in range(len(boxes)):")),
        "suppressed boxes still suppress others": '''
def nms(boxes, scores, iou_threshold):
    order = torch.argsort(scores, descending=True)
    ious = ops.box_iou(boxes, boxes)
    keep = []
    for i in order.tolist():
        if all(ious[i, j] <= iou_threshold for j in order.tolist()[:order.tolist().index(i)]):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)
''',
        "int32 indices": '''
_ref_nms = nms
def nms(boxes, scores, iou_threshold):
    return _ref_nms(boxes, scores, iou_threshold).int()
''',
        "empty input returns float": mutate(
            CELLS, "ex3-nms",
            ("torch.tensor(keep, dtype=torch.int64)", "torch.tensor(keep).long() if keep else torch.tensor([])")),
        "float indices": '''
_ref_nms = nms
def nms(boxes, scores, iou_threshold):
    return _ref_nms(boxes, scores, iou_threshold).float()
''',
    },
    "test-ap": {
        "no interpolation (raw precision)": '''
def average_precision(scores, is_true_positive, num_ground_truth):
    if num_ground_truth == 0 or len(scores) == 0:
        return 0.0
    order = torch.argsort(scores, descending=True, stable=True)
    tp = is_true_positive[order].double().cumsum(0)
    precision = tp / torch.arange(1, len(tp) + 1)
    recall = tp / num_ground_truth
    previous = torch.cat([torch.zeros(1, dtype=torch.float64), recall[:-1]])
    return float(((recall - previous) * precision).sum())
''',
        "11-point interpolation": '''
def average_precision(scores, is_true_positive, num_ground_truth):
    if num_ground_truth == 0 or len(scores) == 0:
        return 0.0
    order = torch.argsort(scores, descending=True, stable=True)
    tp = is_true_positive[order].double().cumsum(0)
    return voc_ap((tp / num_ground_truth).numpy(), (tp / torch.arange(1, len(tp) + 1)).numpy(), method="11_points")
''',
        "recall over detections, not ground truth": '''
def average_precision(scores, is_true_positive, num_ground_truth):
    if num_ground_truth == 0 or len(scores) == 0:
        return 0.0
    order = torch.argsort(scores, descending=True, stable=True)
    tp = is_true_positive[order].double().cumsum(0)
    return voc_ap((tp / max(int(is_true_positive.sum()), 1)).numpy(), (tp / torch.arange(1, len(tp) + 1)).numpy())
''',
        "unstable sort on ties": '''
def average_precision(scores, is_true_positive, num_ground_truth):
    if num_ground_truth == 0 or len(scores) == 0:
        return 0.0
    order = torch.argsort(scores + 1e-9 * torch.arange(len(scores)), descending=True)
    tp = is_true_positive[order].double().cumsum(0)
    return voc_ap((tp / num_ground_truth).numpy(), (tp / torch.arange(1, len(tp) + 1)).numpy())
''',
        "no sort by score": '''
def average_precision(scores, is_true_positive, num_ground_truth):
    if num_ground_truth == 0 or len(scores) == 0:
        return 0.0
    tp = is_true_positive.double().cumsum(0)
    return voc_ap((tp / num_ground_truth).numpy(), (tp / torch.arange(1, len(tp) + 1)).numpy())
''',
        "0-d tensor instead of a float": mutate(CELLS, "ex4-ap",
                                                ("return float(((recall - previous) * envelope).sum())",
                                                                  "return ((recall - previous) * envelope).sum()")),
        "crashes without detections": mutate(
            CELLS, "ex4-ap", ("if num_ground_truth == 0 or len(scores) == 0:", "if num_ground_truth == 0:"),
            ("precision = tp / torch.arange", "tp = tp if len(tp) else None\n    precision = tp / torch.arange")),
        "crashes without ground truth": '''
def average_precision(scores, is_true_positive, num_ground_truth):
    order = torch.argsort(scores, descending=True, stable=True)
    tp = is_true_positive[order].double().cumsum(0)
    return voc_ap((tp / num_ground_truth).numpy(), (tp / torch.arange(1, len(tp) + 1)).numpy())
''',
    },
}

solved, test_solution_passes, test_wrong_answer_fails = exercise_tests(LAB, SOLUTIONS, TEST_CELLS, WRONG)


def test_course_utils_yolo_agrees_with_the_solution(solved):
    """course_utils.models.yolo (lab 07's YOLO) computes what the lab's graded solution computes, bit for bit."""
    import torch

    from course_utils.models import yolo

    g = torch.Generator().manual_seed(0)
    S, B, C, size = 4, 2, 3, 64
    for n in (0, 1, 9, 30):  # 30 objects in 16 cells: several share a cell, some with equal areas
        xy = torch.randint(0, size - 8, (n, 2), generator=g).float()
        wh = torch.randint(2, 9, (n, 2), generator=g).float()
        boxes, labels = torch.cat([xy, xy + wh], 1), torch.randint(1, C + 1, (n,), generator=g)
        assert torch.equal(yolo.encode_yolo_targets(boxes, labels, S, C, size),
                           solved["encode_yolo_targets"](boxes, labels, S, C, size)), n
    output = torch.cat([torch.rand(S, S, 5 * B, generator=g), torch.rand(S, S, C, generator=g).softmax(-1)], -1)
    for ours, theirs in zip(yolo.decode_yolo_output(output, B, size, 0.2),
                            solved["decode_yolo_output"](output, B, size, 0.2)):
        assert torch.equal(ours, theirs)
    pred = torch.cat([torch.rand(2, S, S, 5 * B, generator=g), torch.rand(2, S, S, C, generator=g).softmax(-1)], -1)
    target = torch.stack([yolo.encode_yolo_targets(boxes[i::2], labels[i::2], S, C, size) for i in range(2)])
    ours, theirs = yolo.yolo_loss(pred, target, B), solved["yolo_loss"](pred, target, B)
    assert set(ours) == set(theirs)
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-6, atol=1e-7)
