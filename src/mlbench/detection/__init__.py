"""Object detection shared by the detection benchmarks: COCO-format data, the generated shapes set, COCO mAP."""
