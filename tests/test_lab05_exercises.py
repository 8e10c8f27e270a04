"""Lab 05's graded tests accept the solution and reject plausible wrong answers (visible + hidden).

Each wrong answer replaces the solution's function after the solution cells ran; the exercise's
test cell must then raise (nbgrader scores a test cell that raises anything 0).
"""


from tests.notebook_cells import exercise_tests, load_cells, mutate

LAB = "05_segmentation"
CELLS = load_cells(LAB)
SOLUTIONS = ["setup", "ex1-convolutionize", "ex2-conv-transpose", "ex3-iou", "ex4-hourglass-loss"]
TEST_CELLS = ["test-convolutionize", "test-conv-transpose", "test-iou", "test-hourglass-loss"]



def conv(*changes):
    return mutate(CELLS, "ex1-convolutionize", *changes)


def tconv(*changes):
    return mutate(CELLS, "ex2-conv-transpose", *changes)


def iou(*changes):
    return mutate(CELLS, "ex3-iou", *changes)


def hg(*changes):
    return mutate(CELLS, "ex4-hourglass-loss", *changes)


WEIGHT = "linear.weight.reshape(linear.out_features, channels, h, w)"
SCATTER = "full[:, :, i:i + (h - 1) * stride + 1:stride, j:j + (w - 1) * stride + 1:stride] += stamp"
CROP = "out = full[:, :, padding:padding + h_out, padding:padding + w_out]"
CE = "sum(F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index) for logits in outputs)"

WRONG = {
    "test-convolutionize": {
        "weights transposed before the reshape": conv(
            (WEIGHT, "linear.weight.T.reshape(linear.out_features, channels, h, w)")),
        "flatten order (h, w, C) instead of (C, h, w)": conv(
            (WEIGHT, "linear.weight.reshape(linear.out_features, h, w, channels).permute(0, 3, 1, 2)")),
        "bias dropped": conv(("bias=linear.bias is not None)", "bias=False)"),
                             ("        if linear.bias is not None:\n            conv.bias.copy_(linear.bias)\n", "")),
        "weights not copied (fresh initialisation)": conv((f"conv.weight.copy_({WEIGHT})", "pass")),
        "kernel (w, h) instead of (h, w)": conv(("kernel_size=(h, w)", "kernel_size=(w, h)"),
                                                (WEIGHT, "linear.weight.reshape(linear.out_features, channels, w, h)")),
        "always a 1x1 convolution on C*h*w channels": conv(
            ("nn.Conv2d(channels, linear.out_features, kernel_size=(h, w)",
             "nn.Conv2d(channels * h * w, linear.out_features, kernel_size=1"),
            (WEIGHT, "linear.weight.reshape(linear.out_features, channels * h * w, 1, 1)")),
        "a random bias when the linear layer has none": conv(("bias=linear.bias is not None)", "bias=True)")),
        "modifies the linear layer in place": conv(
            ("    return conv\n", "    with torch.no_grad():\n        linear.weight.mul_(1.0001)\n    return conv\n")),
        # issue 17: requirements the visible test now checks
        "an assert instead of a ValueError": conv(("        raise ValueError(", "        raise AssertionError(")),
        "no shape check (the reshape raises a RuntimeError)": conv(
            ("    if linear.in_features != channels * h * w:\n", "    if False:\n")),
    },
    "test-conv-transpose": {
        "padding added instead of cropped": tconv(
            (CROP, "out = F.pad(full, (padding, padding, padding, padding))")),
        "output_padding ignored": tconv(
            ("    n, _, h, w = x.shape\n", "    n, _, h, w = x.shape\n    output_padding = 0\n")),
        "output size off by one": tconv(("    h_out = (h - 1) * stride - 2 * padding + kh + output_padding\n",
                                         "    h_out = (h - 1) * stride - 2 * padding + kh + output_padding - 1\n"),
                                        ("    w_out = (w - 1) * stride - 2 * padding + kw + output_padding\n",
                                         "    w_out = (w - 1) * stride - 2 * padding + kw + output_padding - 1\n")),
        "kernel flipped": tconv(('stamp = torch.einsum("nchw,cd->ndhw", x, weight[:, :, i, j])',
                                 'stamp = torch.einsum("nchw,cd->ndhw", x, weight.flip(-2, -1)[:, :, i, j])')),
        "channels swapped (weight read as (C_out, C_in, k, k))": tconv(
            ("    _, c_out, kh, kw = weight.shape\n", "    c_out, _, kh, kw = weight.shape\n"),
            ('"nchw,cd->ndhw", x, weight[:, :, i, j]', '"nchw,dc->ndhw", x, weight[:, :, i, j]')),
        "bias ignored": tconv(("        out = out + bias.view(1, -1, 1, 1)", "        pass")),
        "padding cropped from one side only": tconv((CROP, "out = full[:, :, 2 * padding:2 * padding + h_out, "
                                                           "2 * padding:2 * padding + w_out]")),
        "output_padding rows put at the top/left": tconv(
            (CROP, "out = full[:, :, padding:padding + h_out, padding:padding + w_out]\n"
                   "    out = torch.roll(out, shifts=(output_padding, output_padding), dims=(2, 3))")),
        "stride used as a step of 1 in the scatter": tconv((SCATTER, "full[:, :, i:i + h, j:j + w] += stamp")),
        # issue 17: requirements the visible test now checks
        "F.conv2d on the zero-dilated input with the flipped kernel (forbidden)": '''
def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    up = x.new_zeros(n, c, (h - 1) * stride + 1, (w - 1) * stride + 1)
    up[:, :, ::stride, ::stride] = x
    pw, ph = kw - 1 - padding, kh - 1 - padding
    up = F.pad(up, (pw, pw + output_padding, ph, ph + output_padding))
    return F.conv2d(up, weight.transpose(0, 1).flip(-2, -1), bias)
''',
        "float32 output buffer (torch.zeros) for float64 inputs": tconv(
            ("full = x.new_zeros(n, c_out,", "full = torch.zeros(n, c_out,")),
    },
    "test-iou": {
        "ignored pixels counted as false positives": iou(
            ("    pred, target = pred[counted], target[counted]  # (P,) counted pixels\n",
             "    pred, target = pred.flatten(), target.flatten()\n")),
        "absent classes counted as IoU 0": iou(
            ('    iou = torch.full((num_classes,), float("nan"), dtype=torch.float64)',
             "    iou = torch.zeros(num_classes, dtype=torch.float64)"),
            ("float(iou.nanmean())", "float(iou.mean())")),
        "background dropped from the mean": iou(("float(iou.nanmean())", "float(iou[1:].nanmean())")),
        "mean over pixels (pixel accuracy)": iou(("float(iou.nanmean())", "float((pred == target).double().mean())")),
        "argmax over the last dimension": iou(("logits.argmax(dim=1)", "logits.argmax(dim=-1)")),
        "mean of per-image mIoUs": '''
_ref_iou = segmentation_iou
def segmentation_iou(logits, target, num_classes, ignore_index=IGNORE_INDEX):
    iou, _ = _ref_iou(logits, target, num_classes, ignore_index)
    per_image = [_ref_iou(logits[k:k + 1], target[k:k + 1], num_classes, ignore_index)[1] for k in range(len(logits))]
    return iou, float(torch.tensor(per_image).nanmean())  # (an earlier version used np, not imported: a NameError)
''',
        "union = pred + target (no intersection subtracted)": iou(
            ("        union = (is_pred | is_true).sum()", "        union = is_pred.sum() + is_true.sum()")),
        "ignore index hard-coded to -100": iou(("    counted = target != ignore_index",
                                                "    counted = target != -100")),
        "returns a tensor mIoU": iou(("float(iou.nanmean())", "iou.nanmean()")),
        # issue 17: requirements the visible test now checks
        "per-class IoU in float32": iou(
            ('    iou = torch.full((num_classes,), float("nan"), dtype=torch.float64)',
             '    iou = torch.full((num_classes,), float("nan"))'),
            ("(is_pred & is_true).sum().double() / union", "(is_pred & is_true).sum() / union")),
        "mIoU 0 instead of NaN when no class is defined": iou(
            ("float(iou.nanmean())", "float(iou.nan_to_num().sum() / (~iou.isnan()).sum().clamp(min=1))")),
    },
    "test-hourglass-loss": {
        "only the last stack": hg((CE, "F.cross_entropy(outputs[-1], target, ignore_index=ignore_index)")),
        "mean over stacks instead of the sum": hg((CE, f"{CE} / len(outputs)")),
        "earlier stacks detached": hg((CE, "sum(F.cross_entropy(o if k == len(outputs) - 1 else o.detach(), target, "
                                           "ignore_index=ignore_index) for k, o in enumerate(outputs))")),
        "mean over all pixels, ignored ones included (as zeros)": hg(
            (CE, "sum(F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, "
                 "reduction='none').mean() for logits in outputs)")),
        "mean per image, then over the batch": hg(
            (CE, "sum(torch.stack([F.cross_entropy(lg[None], t[None], ignore_index=ignore_index) "
                 "for lg, t in zip(logits, target)]).mean() for logits in outputs)")),
        "sum over pixels": hg((CE, "sum(F.cross_entropy(logits, target, ignore_index=ignore_index, reduction='sum') "
                                   "for logits in outputs)")),
        "ignore_index not passed on": hg((CE, "sum(F.cross_entropy(logits, target) for logits in outputs)")),
        "class weights not passed on": hg((CE, "sum(F.cross_entropy(logits, target, ignore_index=ignore_index) "
                                             "for logits in outputs)")),
        "weighted sum divided by the number of counted pixels": hg(
            (CE, "sum(F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction='sum') "
                 "/ (target != ignore_index).sum() for logits in outputs)")),
        "weights normalised in place": hg(
            (CE, "sum(F.cross_entropy(logits, target, weight=weight if weight is None else weight.div_(weight.sum()), "
                 "ignore_index=ignore_index) for logits in outputs)")),
        "weights indexed by the predicted class": hg(
            (CE, "sum((F.cross_entropy(logits, target, ignore_index=ignore_index, reduction='none') "
                 "* (wt := torch.ones(logits.shape[1]) if weight is None else weight)[logits.argmax(1)]).sum() "
                 "/ wt[logits.argmax(1)][target != ignore_index].sum() for logits in outputs)")),
        "later stacks weighted more": hg((CE, "sum((k + 1) * F.cross_entropy(o, target, ignore_index=ignore_index) "
                                              "for k, o in enumerate(outputs))")),
        # issue 17: requirements the visible test now checks
        "a (1,) tensor instead of a 0-d one": hg((CE, f"{CE} + torch.zeros(1)")),
        "ignore_index hard-coded to -100": hg(
            (CE, "sum(F.cross_entropy(logits, target, weight=weight) for logits in outputs)")),
    },
}

solved, test_solution_passes, test_wrong_answer_fails = exercise_tests(LAB, SOLUTIONS, TEST_CELLS, WRONG)
