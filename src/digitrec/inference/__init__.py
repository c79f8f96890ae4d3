"""Inference: any image into the model's input (decode.py, then preprocess.py), a model run by
PyTorch or ONNX Runtime (backends.py, onnxrun.py), and answers (predictor.py)."""
