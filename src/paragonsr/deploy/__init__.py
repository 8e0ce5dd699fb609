"""Release tooling: fuse, ONNX export (FP32/FP16/INT8), verification gates, model card.

Submodules are imported on demand (onnx/onnxruntime are optional dependencies):
``fuse``, ``onnx_export``, ``quantize``, ``verify``, ``model_card``, and ``release.export_release`` which chains
them the way ``paragonsr export`` does.
"""
