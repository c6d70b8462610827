"""DLRM-DCNv2: MLPerf Training's recommendation benchmark (dlrm_dcnv2) and MLPerf Inference dlrm-v2."""
