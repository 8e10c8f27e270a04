"""Lab 06's graded tests accept the solution and reject plausible wrong answers (visible + hidden).

Each wrong answer replaces the solution's function after the solution cells ran; the exercise's
test cell must then raise (nbgrader scores a test cell that raises anything 0).
"""


from tests.notebook_cells import exercise_tests, load_cells, mutate

LAB = "06_detr"
CELLS = load_cells(LAB)
SOLUTIONS = ["setup", "ex1-giou", "ex2-match", "ex3-criterion"]
TEST_CELLS = ["test-giou", "test-match", "test-criterion"]


WRONG = {
    "test-giou": {
        "union instead of the enclosing box": mutate(
            CELLS, "ex1-giou",
            ("return iou - (enclosing - union) / enclosing", "return iou - (enclosing - union) / union")),
        "enclosing box from the intersection corners": mutate(
            CELLS, "ex1-giou", ("enclosing_tl = torch.min(", "enclosing_tl = torch.max("),
            ("enclosing_br = torch.max(", "enclosing_br = torch.min(")),
        "plain IoU": mutate(CELLS, "ex1-giou", ("return iou - (enclosing - union) / enclosing", "return iou")),
        "no clamp of the intersection": mutate(
            CELLS, "ex1-giou", ("wh = (bottom_right - top_left).clamp(min=0)", "wh = bottom_right - top_left")),
        "union without subtracting the intersection": mutate(
            CELLS, "ex1-giou",
            ("union = area1[:, None] + area2[None, :] - inter", "union = area1[:, None] + area2[None, :]")),
        "element-wise instead of pairwise": '''
_ref_giou = generalized_box_iou
def generalized_box_iou(boxes1, boxes2):
    n = min(len(boxes1), len(boxes2))
    out = torch.zeros(len(boxes1), len(boxes2))
    d = torch.diag(_ref_giou(boxes1[:n], boxes2[:n]))
    out[range(n), range(n)] = d
    return out
''',
        "boxes treated as xywh": '''
_ref_giou = generalized_box_iou
def generalized_box_iou(boxes1, boxes2):
    return _ref_giou(ops.box_convert(boxes1, "xywh", "xyxy"), ops.box_convert(boxes2, "xywh", "xyxy"))
''',
        # issue 17: requirements the visible test now checks
        "union clamped at 1 against division by zero (pixel habits)": mutate(
            CELLS, "ex1-giou", ("union = area1[:, None] + area2[None, :] - inter",
                                "union = (area1[:, None] + area2[None, :] - inter).clamp(min=1)")),
        "IoU part from ops.box_iou (forbidden)": mutate(CELLS, "ex1-giou", ("iou = inter / union",
                                                                         "iou = ops.box_iou(boxes1, boxes2)")),
        "computed under torch.no_grad() (the loss cannot train the boxes)": '''
_ref_giou = generalized_box_iou
def generalized_box_iou(boxes1, boxes2):
    with torch.no_grad():
        return _ref_giou(boxes1, boxes2)
''',
        "a Python loop over boxes1": '''
_ref_giou = generalized_box_iou
def generalized_box_iou(boxes1, boxes2):
    if len(boxes1) == 0:
        return _ref_giou(boxes1, boxes2)
    return torch.cat([_ref_giou(b[None], boxes2) for b in boxes1])
''',
        "float32 result for float64 boxes": mutate(
            CELLS, "ex1-giou",
            ("return iou - (enclosing - union) / enclosing", "return (iou - (enclosing - union) / enclosing).float()")),
    },
    "test-match": {
        "+ probability instead of - probability": mutate(CELLS, "ex2-match", ("c_class = -prob", "c_class = prob")),
        "log-probability in the cost": mutate(CELLS, "ex2-match", ("c_class = -prob", "c_class = -prob.log()")),
        "L1 on xyxy instead of cxcywh": mutate(
            CELLS, "ex2-match", ("c_bbox = torch.cdist(pred_boxes, tgt_boxes, p=1)",
                                 "c_bbox = torch.cdist(ops.box_convert(pred_boxes, 'cxcywh', 'xyxy'), "
                                 "ops.box_convert(tgt_boxes, 'cxcywh', 'xyxy'), p=1)")),
        "L2 instead of L1": mutate(CELLS, "ex2-match", ("p=1)", "p=2)")),
        "GIoU on cxcywh boxes": mutate(
            CELLS, "ex2-match", ("c_giou = -generalized_box_iou(ops.box_convert(pred_boxes, \"cxcywh\", \"xyxy\"),",
                                 "c_giou = -generalized_box_iou(pred_boxes,"),
            ("ops.box_convert(tgt_boxes, \"cxcywh\", \"xyxy\"))  # (Q, N)", "tgt_boxes)  # (Q, N)")),
        "+ GIoU in the cost": mutate(CELLS, "ex2-match",
                                     ("c_giou = -generalized_box_iou", "c_giou = generalized_box_iou")),
        "weights ignored": mutate(CELLS, "ex2-match", (
            "return cost_class * c_class + cost_bbox * c_bbox + cost_giou * c_giou",
            "return 1.0 * c_class + 5.0 * c_bbox + 2.0 * c_giou")),
        "greedy argmin per target": mutate(CELLS, "ex2-match", (
            "rows, cols = linear_sum_assignment(cost.cpu().numpy())",
            "cols = np.arange(cost.shape[1]); rows = cost.argmin(0).numpy()")),
        "greedy, one query per target without reuse": mutate(CELLS, "ex2-match", (
            "rows, cols = linear_sum_assignment(cost.cpu().numpy())",
            "rows, cols, c = [], [], cost.clone()\n"
            "        for j in range(cost.shape[1]):\n"
            "            i = int(c[:, j].argmin()); rows.append(i); cols.append(j); c[i] = float('inf')\n"
            "        rows, cols = np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)")),
        "matching over the whole batch": '''
@torch.no_grad()
def hungarian_match(pred_logits, pred_boxes, targets, cost_class=1.0, cost_bbox=5.0, cost_giou=2.0):
    B, Q, _ = pred_logits.shape
    labels = torch.cat([t["labels"] for t in targets]); boxes = torch.cat([t["boxes"] for t in targets])
    sizes = [len(t["labels"]) for t in targets]
    cost = matching_cost(pred_logits.flatten(0, 1), pred_boxes.flatten(0, 1), labels, boxes, cost_class, cost_bbox,
                         cost_giou).view(B, Q, -1)
    out = []
    for b, c in enumerate(cost.split(sizes, -1)):
        rows, cols = linear_sum_assignment(c[b].numpy())
        out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    if sum(sizes) and len(targets) > 1:  # the wrong part: one assignment over all images' targets
        rows, cols = linear_sum_assignment(cost.flatten(0, 1).numpy())
        starts = [0] + list(np.cumsum(sizes))
        out = []
        for b in range(B):
            sel = (cols >= starts[b]) & (cols < starts[b + 1])
            out.append((torch.as_tensor(rows[sel] % Q, dtype=torch.int64),
                        torch.as_tensor(cols[sel] - starts[b], dtype=torch.int64)))
    return out
''',
        "float indices": '''
_ref_match = hungarian_match
def hungarian_match(*args, **kwargs):
    return [(s.float(), t.float()) for s, t in _ref_match(*args, **kwargs)]
''',
        "crashes on images without targets": mutate(CELLS, "ex2-match", (
            "indices = []", "indices = []\n    assert all(len(t['labels']) for t in targets)")),
        "softmax over queries": mutate(CELLS, "ex2-match",
                                       ("prob = pred_logits.softmax(-1)", "prob = pred_logits.softmax(0)")),
        # issue 17: requirements the visible test now checks
        "class cost from the raw logits": mutate(CELLS, "ex2-match", ("c_class = -prob[:, tgt_labels]",
                                                                       "c_class = -pred_logits[:, tgt_labels]")),
        "no torch.no_grad() (cost.numpy() on predictions that require a gradient)": mutate(
            CELLS, "ex2-match", ("@torch.no_grad()\ndef hungarian_match", "def hungarian_match")),
        "weights not passed on from hungarian_match": mutate(CELLS, "ex2-match", (
            'matching_cost(logits, boxes, target["labels"], target["boxes"], cost_class, cost_bbox, cost_giou)',
            'matching_cost(logits, boxes, target["labels"], target["boxes"])')),
    },
    "test-criterion": {
        "no-object weight omitted": mutate(CELLS, "ex3-criterion", (
            "weight[num_classes] = eos_coef", "weight[num_classes] = 1.0")),
        "no-object weight on class 0": mutate(CELLS, "ex3-criterion",
                                              ("weight[num_classes] = eos_coef", "weight[0] = eos_coef")),
        "normalised by the number of queries": mutate(CELLS, "ex3-criterion", (
            "num_boxes = max(sum(len(t[\"labels\"]) for t in targets), 1)", "num_boxes = B * Q")),
        "normalised per image": mutate(CELLS, "ex3-criterion", (
            "num_boxes = max(sum(len(t[\"labels\"]) for t in targets), 1)",
            "num_boxes = max(sum(len(t[\"labels\"]) for t in targets), 1) / B")),
        "box losses averaged (mean) instead of / num_boxes": mutate(CELLS, "ex3-criterion", (
            "loss_bbox = (matched - tgt_boxes).abs().sum() / num_boxes",
            "loss_bbox = (matched - tgt_boxes).abs().mean() if len(matched) else matched.sum()")),
        "no minimum of 1 box": mutate(CELLS, "ex3-criterion", (
            "num_boxes = max(sum(len(t[\"labels\"]) for t in targets), 1)",
            "num_boxes = sum(len(t[\"labels\"]) for t in targets)")),
        "CE only on matched queries": mutate(CELLS, "ex3-criterion", (
            "loss_ce = F.cross_entropy(pred_logits.transpose(1, 2), classes, weight=weight)",
            "loss_ce = F.cross_entropy(pred_logits[batch_idx, src_idx], classes[batch_idx, src_idx], weight=weight)")),
        "box losses on all queries": '''
def set_criterion(pred_logits, pred_boxes, targets, indices, num_classes, eos_coef=0.1):
    B, Q, _ = pred_logits.shape
    num_boxes = max(sum(len(t["labels"]) for t in targets), 1)
    classes = torch.full((B, Q), num_classes, dtype=torch.int64)
    tgt_all = pred_boxes.detach().clone() * 0 + 0.5
    for b, (src, tgt) in enumerate(indices):
        classes[b, src] = targets[b]["labels"][tgt]
        tgt_all[b, src] = targets[b]["boxes"][tgt]
    weight = torch.ones(num_classes + 1); weight[num_classes] = eos_coef
    loss_ce = F.cross_entropy(pred_logits.transpose(1, 2), classes, weight=weight)
    loss_bbox = (pred_boxes - tgt_all).abs().sum() / num_boxes
    p = ops.box_convert(pred_boxes.flatten(0, 1), "cxcywh", "xyxy")
    t = ops.box_convert(tgt_all.flatten(0, 1), "cxcywh", "xyxy")
    loss_giou = (1 - torch.diag(generalized_box_iou(p, t))).sum() / num_boxes
    return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}
''',
        "unweighted mean of the weighted CE": mutate(CELLS, "ex3-criterion", (
            "loss_ce = F.cross_entropy(pred_logits.transpose(1, 2), classes, weight=weight)",
            "loss_ce = F.cross_entropy(pred_logits.transpose(1, 2), classes, weight=weight, reduction='sum')"
            " / (B * Q)")),
        "targets matched in order, ignoring tgt_idx": mutate(CELLS, "ex3-criterion", (
            "tgt_boxes = torch.cat([t[\"boxes\"][tgt] for t, (_, tgt) in zip(targets, indices)])",
            "tgt_boxes = torch.cat([t[\"boxes\"][:len(tgt)] for t, (_, tgt) in zip(targets, indices)])"),
            ("classes[batch_idx, src_idx] = torch.cat([t[\"labels\"][tgt] for t, (_, tgt) in zip(targets, indices)])",
             "classes[batch_idx, src_idx] = torch.cat([t[\"labels\"][:len(tgt)] "
             "for t, (_, tgt) in zip(targets, indices)])")),
        "GIoU term as -GIoU": mutate(CELLS, "ex3-criterion",
                                     ("loss_giou = (1 - giou).sum()", "loss_giou = (-giou).sum()")),
        "L1 on xyxy": mutate(CELLS, "ex3-criterion", (
            "loss_bbox = (matched - tgt_boxes).abs().sum() / num_boxes",
            "loss_bbox = (ops.box_convert(matched, 'cxcywh', 'xyxy') - ops.box_convert(tgt_boxes, 'cxcywh', 'xyxy'))"
            ".abs().sum() / num_boxes")),
        # issue 17: requirements the visible test now checks
        "GIoU term on detached boxes": mutate(CELLS, "ex3-criterion", (
            'generalized_box_iou(ops.box_convert(matched, "cxcywh", "xyxy")',
            'generalized_box_iou(ops.box_convert(matched.detach(), "cxcywh", "xyxy")')),
        "L1 term on detached boxes": mutate(CELLS, "ex3-criterion", (
            "loss_bbox = (matched - tgt_boxes).abs().sum() / num_boxes",
            "loss_bbox = (matched.detach() - tgt_boxes).abs().sum() / num_boxes")),
        "eos_coef hard-coded to 0.1": mutate(CELLS, "ex3-criterion", ("weight[num_classes] = eos_coef",
                                                                      "weight[num_classes] = 0.1")),
        "cross-entropy of the softmax probabilities": mutate(CELLS, "ex3-criterion", (
            "F.cross_entropy(pred_logits.transpose(1, 2), classes, weight=weight)",
            "F.cross_entropy(pred_logits.softmax(-1).transpose(1, 2), classes, weight=weight)")),
    },
}

solved, test_solution_passes, test_wrong_answer_fails = exercise_tests(LAB, SOLUTIONS, TEST_CELLS, WRONG)


def test_course_utils_detr_agrees_with_the_solution(solved):
    """The reference matcher and loss in course_utils.models.detr (used by later labs) = the solution's."""
    import torch

    from course_utils.models import detr

    g = torch.Generator().manual_seed(0)
    counts = [0, 3, 5]
    logits = torch.randn(3, 6, 4, generator=g)
    boxes = torch.cat([0.2 + 0.6 * torch.rand(3, 6, 2, generator=g), 0.05 + 0.3 * torch.rand(3, 6, 2, generator=g)], -1)
    targets = [{"labels": torch.randint(0, 3, (n,), generator=g),
                "boxes": torch.cat([0.2 + 0.6 * torch.rand(n, 2, generator=g),
                                    0.1 + 0.2 * torch.rand(n, 2, generator=g)], -1)}
               for n in counts]
    ours = detr.hungarian_match(logits, boxes, targets, cost_class=2.0)
    theirs = solved["hungarian_match"](logits, boxes, targets, cost_class=2.0)
    for (a, b), (c, d) in zip(ours, theirs):
        assert torch.equal(a, c) and torch.equal(b, d)
    got = detr.set_loss(logits, boxes, targets, ours, 3, 0.1)
    want = solved["set_criterion"](logits, boxes, targets, ours, 3, 0.1)
    for key in want:
        torch.testing.assert_close(got[key], want[key])


def test_small_detr_shapes_and_postprocess():
    import torch

    from course_utils.models.detr import build_small_detr, detr_loss, detr_targets, postprocess

    model = build_small_detr(3, 9)
    out = model(torch.rand(2, 3, 64, 64))
    assert out["pred_logits"].shape == (2, 9, 4) and out["pred_boxes"].shape == (2, 9, 4)
    assert len(out["aux_outputs"]) == 2
    assert model.cross_attention().shape == (3, 2, 9, 8, 8)
    torch.testing.assert_close(model.cross_attention().sum((-1, -2)), torch.ones(3, 2, 9))
    targets = detr_targets([{"boxes": torch.tensor([[0.0, 16.0, 32.0, 64.0]]), "labels": torch.tensor([2])},
                            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}], (64, 64))
    torch.testing.assert_close(targets[0]["boxes"], torch.tensor([[0.25, 0.625, 0.5, 0.75]]))
    assert targets[0]["labels"].tolist() == [1]
    losses = detr_loss(out, targets, 3)
    sum(losses.values()).backward()
    dets = postprocess(out, (64, 64))
    assert len(dets) == 2 and dets[0]["boxes"].shape == (9, 4) and dets[0]["labels"].min() >= 1
    assert (dets[0]["boxes"] <= 64 + 1e-4).all() and (dets[0]["scores"] <= 1).all()
