"""``torchvision.models.detection.backbone_utils``: imported by ModelScope's RetinaFace, which calls nothing in it."""
