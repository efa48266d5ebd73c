"""specks train: fine-tuning YOLOX-layout models (needs the train extra: PyTorch)."""
