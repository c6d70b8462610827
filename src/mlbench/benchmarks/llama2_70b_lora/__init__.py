"""Llama 2 70B LoRA fine-tuning on GovReport (MLPerf Training llama2_70b_lora)."""
