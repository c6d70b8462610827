"""RetinaNet object detection (MLPerf ``retinanet``, the single-stage detector)."""
