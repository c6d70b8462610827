"""Mask R-CNN (MLPerf Training ``maskrcnn``, instance segmentation)."""
