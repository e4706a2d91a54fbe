//! Saving and loading modules as safetensors.
