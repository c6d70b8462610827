"""BERT: masked-LM pre-training (MLPerf Training) and SQuAD v1.1 question answering (MLPerf Inference)."""
