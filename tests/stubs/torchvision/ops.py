"""``torchvision.ops`` subset: ``nms`` and ``batched_nms``, from torchvision's documentation and the behaviour of its
CPU kernel (what DAMO-YOLO's post-processing calls).

- ``nms(boxes, scores, iou_threshold)``: boxes (N, 4) x1 y1 x2 y2; visited by decreasing score (a stable sort);
  a box is discarded when its IoU with a kept box is > ``iou_threshold`` (the kernel compares the float IoU with
  the threshold as a C++ double); areas ``(x2 - x1) * (y2 - y1)``; returns int64 indices by decreasing score.
- ``batched_nms(boxes, scores, idxs, iou_threshold)``: NMS within each category. On the CPU, when
  ``boxes.numel() > 4000`` NMS runs per category and the kept indices are sorted by decreasing score
  (``Tensor.sort(descending=True)``); otherwise every box is offset by ``idxs * (boxes.max() + 1)`` and one NMS
  runs (the "coordinate trick").
"""

import torch


def nms(boxes, scores, iou_threshold):
    boxes = boxes.float()
    scores = scores.float()
    order = torch.sort(scores, stable=True, descending=True)[1]
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    removed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for pos in range(len(order)):
        if removed[pos]:
            continue
        i = order[pos]
        keep.append(int(i))
        rest = order[pos + 1 :]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        removed[pos + 1 :] |= iou.double() > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def batched_nms(boxes, scores, idxs, iou_threshold):
    if boxes.numel() > 4000:
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for class_id in torch.unique(idxs):
            curr = torch.where(idxs == class_id)[0]
            keep_mask[curr[nms(boxes[curr], scores[curr], iou_threshold)]] = True
        keep = torch.where(keep_mask)[0]
        return keep[scores[keep].sort(descending=True)[1]]
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    offsets = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)
