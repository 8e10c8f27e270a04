"""Lab 01's graded tests accept the solution and reject plausible wrong answers (visible + hidden).

Each wrong answer replaces the solution's function after the solution cell ran; the exercise's
test cell must then raise (nbgrader scores a test cell that raises anything 0). The solution
itself must pass, so a broken test cell cannot pass this test by raising.
"""


from tests.notebook_cells import exercise_tests, load_cells, mutate

LAB = "01_localisation"
CELLS = load_cells(LAB)
SOLUTIONS = ["setup", "ex1-box-conversions", "ex2-iou", "ex3-model", "ex4-loss"]
TEST_CELLS = ["test-box-conversions", "test-iou", "test-model", "test-loss"]


WRONG = {
    "test-box-conversions": {
        "off-by-one width": """
def xyxy_to_cxcywh(boxes):
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1 + 1, y2 - y1 + 1], dim=-1)
""",
        "full width instead of half in cxcywh_to_xyxy": """
def cxcywh_to_xyxy(boxes):
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w, cy - h, cx + w, cy + h], dim=-1)
""",
        "height and width swapped in normalize": """
def normalize_boxes(boxes, image_size):
    h, w = image_size
    return boxes / torch.tensor([h, w, h, w], dtype=boxes.dtype)
""",
        "only square images in denormalize": """
def denormalize_boxes(boxes, image_size):
    return boxes * image_size[0]
""",
        "modifies its input in place": """
def normalize_boxes(boxes, image_size):
    h, w = image_size
    boxes /= torch.tensor([w, h, w, h], dtype=boxes.dtype)
    return boxes
""",
        "only 2-d inputs (boxes[:, k])": """
def xywh_to_xyxy(boxes):
    return torch.stack([boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]], dim=1)
""",
        "returns float32 whatever the input": """
def xyxy_to_xywh(boxes):
    x1, y1, x2, y2 = boxes.float().unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)
""",
        "xywh computed as xyxy (no conversion)": """
def xyxy_to_xywh(boxes):
    return boxes.clone()
""",
        "numpy array instead of a tensor": """
import numpy as np
def normalize_boxes(boxes, image_size):
    h, w = image_size
    return boxes.numpy() / np.array([w, h, w, h])
""",
        "denormalize with height and width swapped": """
def denormalize_boxes(boxes, image_size):
    h, w = image_size
    return boxes * torch.tensor([h, w, h, w], dtype=boxes.dtype)
""",
        "+1 pixel width in xyxy_to_xywh": """
def xyxy_to_xywh(boxes):
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1 + 1, y2 - y1 + 1], dim=-1)
""",
        "float32 constants turn float64 boxes into float32 (normalize)": """
def normalize_boxes(boxes, image_size):
    h, w = image_size
    return (boxes / torch.tensor([w, h, w, h], dtype=torch.float32)).float()
""",
        "cxcywh_to_xyxy modifies its input in place": """
def cxcywh_to_xyxy(boxes):
    boxes[..., :2] -= boxes[..., 2:] / 2
    boxes[..., 2:] += boxes[..., :2]
    return boxes
""",
    },
    "test-iou": {
        "no clamp of the overlap": """
def pairwise_iou(b1, b2):
    lt = torch.maximum(b1[:, None, :2], b2[None, :, :2]); rb = torch.minimum(b1[:, None, 2:], b2[None, :, 2:])
    inter = (rb - lt).prod(-1)
    a1 = (b1[:, 2:] - b1[:, :2]).prod(-1); a2 = (b2[:, 2:] - b2[:, :2]).prod(-1)
    return inter / (a1[:, None] + a2[None] - inter)
def iou(a, b):
    return pairwise_iou(a[None], b[None])[0, 0]
""",
        "clamp of the product, not of each side": """
def pairwise_iou(b1, b2):
    lt = torch.maximum(b1[:, None, :2], b2[None, :, :2]); rb = torch.minimum(b1[:, None, 2:], b2[None, :, 2:])
    inter = (rb - lt).prod(-1).clamp(min=0)
    a1 = (b1[:, 2:] - b1[:, :2]).prod(-1); a2 = (b2[:, 2:] - b2[:, :2]).prod(-1)
    u = a1[:, None] + a2[None] - inter
    return torch.where(u > 0, inter / u, 0.0)
def iou(a, b):
    return pairwise_iou(a[None], b[None])[0, 0]
""",
        "VOC +1 pixel convention": """
def pairwise_iou(b1, b2):
    lt = torch.maximum(b1[:, None, :2], b2[None, :, :2]); rb = torch.minimum(b1[:, None, 2:], b2[None, :, 2:])
    inter = (rb - lt + 1).clamp(min=0).prod(-1)
    a1 = (b1[:, 2:] - b1[:, :2] + 1).prod(-1); a2 = (b2[:, 2:] - b2[:, :2] + 1).prod(-1)
    return inter / (a1[:, None] + a2[None] - inter)
def iou(a, b):
    return pairwise_iou(a[None], b[None])[0, 0]
""",
        "divides by the first box's area": """
def pairwise_iou(b1, b2):
    lt = torch.maximum(b1[:, None, :2], b2[None, :, :2]); rb = torch.minimum(b1[:, None, 2:], b2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    a1 = (b1[:, 2:] - b1[:, :2]).prod(-1)
    return inter / a1[:, None]
def iou(a, b):
    return pairwise_iou(a[None], b[None])[0, 0]
""",
        "nan for empty unions": """
_ref = pairwise_iou
def pairwise_iou(b1, b2):
    lt = torch.maximum(b1[:, None, :2], b2[None, :, :2]); rb = torch.minimum(b1[:, None, 2:], b2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    a1 = (b1[:, 2:] - b1[:, :2]).prod(-1); a2 = (b2[:, 2:] - b2[:, :2]).prod(-1)
    return inter / (a1[:, None] + a2[None] - inter)
def iou(a, b):
    return pairwise_iou(a[None], b[None])[0, 0]
""",
        "transposed result (M, N)": """
_ref = pairwise_iou
def pairwise_iou(b1, b2):
    return _ref(b2, b1)
""",
        "breaks on empty inputs": """
_ref = pairwise_iou
def pairwise_iou(b1, b2):
    return torch.stack([_ref(b[None], b2)[0] for b in b1])
""",
        "float32 whatever the input": """
_ref = pairwise_iou
def pairwise_iou(b1, b2):
    return _ref(b1.float(), b2.float())
""",
        "a Python loop over boxes1 (handles empty inputs)": """
_ref = pairwise_iou
def pairwise_iou(b1, b2):
    out = torch.zeros(len(b1), len(b2), dtype=b1.dtype)
    for i in range(len(b1)):
        out[i] = _ref(b1[i:i + 1], b2)[0]
    return out
""",
        "a loop in a helper the answer calls": """
_ref = pairwise_iou
def rows_iou(b1, b2):
    if len(b1) == 0:
        return torch.zeros(0, len(b2), dtype=b1.dtype)
    return torch.stack([_ref(b[None], b2)[0] for b in b1])
def pairwise_iou(b1, b2):
    return rows_iou(b1, b2)
""",
        "numpy array instead of a tensor": """
import numpy as np
_ref = pairwise_iou
def pairwise_iou(b1, b2):
    return _ref(b1, b2).numpy()
""",
        "iou returns the (1, 1) matrix": """
def iou(a, b):
    return pairwise_iou(a[None], b[None])
""",
        "zero-area boxes only handled in iou, nan in pairwise_iou": """
def pairwise_iou(b1, b2):
    lt = torch.maximum(b1[:, None, :2], b2[None, :, :2]); rb = torch.minimum(b1[:, None, 2:], b2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    a1 = (b1[:, 2:] - b1[:, :2]).prod(-1); a2 = (b2[:, 2:] - b2[:, :2]).prod(-1)
    return inter / (a1[:, None] + a2[None] - inter)
def iou(a, b):
    return torch.nan_to_num(pairwise_iou(a[None], b[None])[0, 0])
""",
    },
    "test-model": {
        "hard-coded 8x8 feature map (no adaptive pooling)": """
class LocalisationNet(nn.Module):
    def __init__(self, backbone, feat_channels, num_classes, grid=4, hidden=128):
        super().__init__()
        self.backbone = backbone
        self.class_head = nn.Sequential(nn.Flatten(), nn.Linear(feat_channels * 16 * 16, num_classes))
        self.box_head = nn.Sequential(nn.Flatten(), nn.Linear(feat_channels * 16 * 16, 4), nn.Sigmoid())
    def forward(self, x):
        f = self.backbone(x)
        return self.class_head(f), self.box_head(f)
""",
        "no sigmoid on boxes": mutate(
            CELLS, "ex3-model", (", nn.Linear(hidden, 4), nn.Sigmoid())", ", nn.Linear(hidden, 4))")),
        "softmax on the class output": mutate(
            CELLS, "ex3-model",
            ("nn.Linear(hidden, num_classes))", "nn.Linear(hidden, num_classes), nn.Softmax(dim=1))")),
        "always global pooling": mutate(CELLS, "ex3-model", ("nn.AdaptiveAvgPool2d(grid)", "nn.AdaptiveAvgPool2d(1)"),
                                        ("feat_channels * grid * grid", "feat_channels")),
        "box head detached from the backbone": mutate(
            CELLS, "ex3-model", ("self.box_head(features)", "self.box_head(features.detach())")),
        "class head detached from the backbone": mutate(
            CELLS, "ex3-model", ("self.class_head(features)", "self.class_head(features.detach())")),
        "clamp to [0, 1] instead of a sigmoid": mutate(
            CELLS, "ex3-model", (", nn.Linear(hidden, 4), nn.Sigmoid())", ", nn.Linear(hidden, 4))"),
            ("self.box_head(features)", "self.box_head(features).clamp(0, 1)")),
        "max pooling instead of average pooling": mutate(
            CELLS, "ex3-model", ("nn.AdaptiveAvgPool2d(grid)", "nn.AdaptiveMaxPool2d(grid)")),
        "no ReLU between the two Linear layers": mutate(
            CELLS, "ex3-model", ("nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)",
                                 "nn.Linear(in_features, hidden), nn.Linear(hidden, num_classes)"),
            ("nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 4)",
             "nn.Linear(in_features, hidden), nn.Linear(hidden, 4)")),
        "log-softmax on the class output": mutate(
            CELLS, "ex3-model",
            ("nn.Linear(hidden, num_classes))", "nn.Linear(hidden, num_classes), nn.LogSoftmax(dim=1))")),
        "one Linear per head (no hidden layer)": mutate(
            CELLS, "ex3-model",
            ("nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)",
             "nn.Linear(in_features, num_classes)"),
            ("nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 4)", "nn.Linear(in_features, 4)")),
    },
    "test-loss": {
        "mean over all box coordinates (F.l1_loss default)": """
def localisation_loss(logits, box_pred, labels, box_target, box_weight=5.0):
    return {"loss_cls": F.cross_entropy(logits, labels), "loss_box": box_weight * F.l1_loss(box_pred, box_target)}
""",
        "sum over the batch": """
def localisation_loss(logits, box_pred, labels, box_target, box_weight=5.0):
    return {"loss_cls": F.cross_entropy(logits, labels),
            "loss_box": box_weight * (box_pred - box_target).abs().sum()}
""",
        "cross-entropy of probabilities": """
def localisation_loss(logits, box_pred, labels, box_target, box_weight=5.0):
    return {"loss_cls": F.cross_entropy(logits.softmax(1), labels),
            "loss_box": box_weight * (box_pred - box_target).abs().sum(1).mean()}
""",
        "box_weight ignored": """
def localisation_loss(logits, box_pred, labels, box_target, box_weight=5.0):
    return {"loss_cls": F.cross_entropy(logits, labels), "loss_box": (box_pred - box_target).abs().sum(1).mean()}
""",
        "squared error instead of L1": """
def localisation_loss(logits, box_pred, labels, box_target, box_weight=5.0):
    return {"loss_cls": F.cross_entropy(logits, labels),
            "loss_box": box_weight * ((box_pred - box_target) ** 2).sum(1).mean()}
""",
        "smooth L1 instead of L1": """
def localisation_loss(logits, box_pred, labels, box_target, box_weight=5.0):
    return {"loss_cls": F.cross_entropy(logits, labels),
            "loss_box": box_weight * F.smooth_l1_loss(box_pred, box_target, reduction="none").sum(1).mean()}
""",
        "returns python floats (no gradient)": """
def localisation_loss(logits, box_pred, labels, box_target, box_weight=5.0):
    return {"loss_cls": torch.tensor(F.cross_entropy(logits, labels).item()),
            "loss_box": torch.tensor(box_weight * (box_pred - box_target).abs().sum(1).mean().item())}
""",
        "class term on detached logits": """
def localisation_loss(logits, box_pred, labels, box_target, box_weight=5.0):
    return {"loss_cls": F.cross_entropy(logits.detach(), labels),
            "loss_box": box_weight * (box_pred - box_target).abs().sum(1).mean()}
""",
        "box term on detached predictions": """
def localisation_loss(logits, box_pred, labels, box_target, box_weight=5.0):
    return {"loss_cls": F.cross_entropy(logits, labels),
            "loss_box": box_weight * (box_pred.detach() - box_target).abs().sum(1).mean()}
""",
        "box term in float64 (a float64 weight)": """
def localisation_loss(logits, box_pred, labels, box_target, box_weight=5.0):
    return {"loss_cls": F.cross_entropy(logits, labels),
            "loss_box": torch.tensor(box_weight, dtype=torch.float64) * (box_pred - box_target).abs().sum(1).mean()}
""",
        "box term as a (1,) tensor": """
def localisation_loss(logits, box_pred, labels, box_target, box_weight=5.0):
    return {"loss_cls": F.cross_entropy(logits, labels),
            "loss_box": box_weight * (box_pred - box_target).abs().sum(1).mean().reshape(1)}
""",
        "per-sample losses (no reduction)": """
def localisation_loss(logits, box_pred, labels, box_target, box_weight=5.0):
    return {"loss_cls": F.cross_entropy(logits, labels, reduction="none"),
            "loss_box": box_weight * (box_pred - box_target).abs().sum(1)}
""",
    },
}

solved, test_solution_passes, test_wrong_answer_fails = exercise_tests(LAB, SOLUTIONS, TEST_CELLS, WRONG,
                                                                       env={"COURSE_MODE": "smoke"})
