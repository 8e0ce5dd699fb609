import os

# Offline first: onnxruntime >= 1.2x starts its telemetry (a device id and an event store under
# ~/.cache/Microsoft, uploads to Microsoft's collector) when it is imported, unless this is set beforehand.
# Set here so every entry point that imports paragonsr, and anything it imports afterwards, inherits it.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

__version__ = "0.1.0"
