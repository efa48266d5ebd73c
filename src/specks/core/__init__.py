"""The core: image bytes to Detections. No web framework, no settings, no model files."""
